// Each node step on its own against fakes: what shouldDo reads, what do and undo change, and
// that verify refuses a step whose effect is missing.
import { describe, expect, it } from '@jest/globals';
import { DomainState } from '../libvirt/index.js';
import { instance, UID, world, type World } from '../test-support.js';
import { buildUndoPlan, respawnPlan, spawnPlan } from './plans.js';
import { runSteps, undoSteps, type NodeStep, type StepContext } from './step.js';
import {
  configDriveStep,
  defineStep,
  disksStep,
  imageStep,
  plugNetworksStep,
  startStep,
  waitRunningStep,
} from './steps.js';

const ctx = (w: World, runStrategy?: string): StepContext => ({
  d: w.d,
  inst: instance({ phase: 'Spawning' }, { runStrategy }),
  aborted: () => false,
  scratch: {},
  report: async () => true,
});
const file = (w: World, f: 'root.qcow2' | 'cidata.iso') => w.d.paths.instanceFile(UID, f);

async function lifecycle(step: NodeStep, c: StepContext) {
  const before = await step.shouldDo(c);
  await step.do(c);
  await step.verify(c);
  const after = await step.shouldDo(c);
  return { before, after };
}

describe('node steps', () => {
  it('plugNetworksStep plugs on every build, bridges there or not, and verifies the bridge', async () => {
    const w = world();
    const c = ctx(w);
    expect(await lifecycle(plugNetworksStep, c)).toEqual({ before: true, after: true });
    expect(w.host.calls).toEqual([`plugNetworks ${UID}`]);
    w.host.plugNetworks = async () => [];
    w.host.bridges.clear();
    await expect(plugNetworksStep.verify(c)).rejects.toMatchObject({ reason: 'BridgeMissing' });
  });

  it('imageStep fetches the base only while the root overlay is missing', async () => {
    const w = world();
    const c = ctx(w);
    expect(await imageStep.shouldDo(c)).toBe(true);
    await imageStep.do(c);
    await imageStep.verify(c);
    expect(c.scratch.base).toBe(`/cache/${'a'.repeat(64)}.img`);
    w.host.files.add(file(w, 'root.qcow2'));
    expect(await imageStep.shouldDo(c)).toBe(false);
  });

  it('disksStep makes missing disks and its undo removes them', async () => {
    const w = world();
    const c = ctx(w);
    expect(await lifecycle(disksStep({ createRoot: true }), c)).toEqual({
      before: true,
      after: false,
    });
    await disksStep({ createRoot: true }).undo(c);
    expect(w.host.files.has(file(w, 'root.qcow2'))).toBe(false);
  });

  it('disksStep for a respawn refuses to make a root disk and its undo removes nothing', async () => {
    const w = world();
    const c = ctx(w);
    await expect(disksStep({ createRoot: false }).do(c)).rejects.toMatchObject({
      reason: 'RootDiskMissing',
      retryable: false,
    });
    w.host.files.add(file(w, 'root.qcow2'));
    await disksStep({ createRoot: false }).undo(c);
    expect(w.host.calls).toEqual([]);
  });

  it('configDriveStep builds the drive once', async () => {
    const w = world();
    expect(await lifecycle(configDriveStep, ctx(w))).toEqual({ before: true, after: false });
    expect(w.host.calls).toEqual(['buildConfigDrive']);
  });

  it('defineStep defines the domain with the Instance UID, and its undo destroys and undefines it', async () => {
    const w = world();
    const c = ctx(w);
    expect(await lifecycle(defineStep, c)).toEqual({ before: true, after: false });
    w.conn.domains.get(UID)!.state = DomainState.RUNNING;
    await defineStep.undo(c);
    expect(w.conn.calls).toEqual([`defineXML ${UID}`, `destroy ${UID}`, `undefine ${UID}`]);
  });

  it('startStep starts a stopped domain; waitRunningStep verifies it runs; undo destroys it', async () => {
    const w = world();
    const c = ctx(w);
    w.conn.addDomain(UID, DomainState.SHUTOFF);
    expect(await lifecycle(startStep, c)).toEqual({ before: true, after: false });
    await waitRunningStep.do(c);
    await waitRunningStep.verify(c);
    await startStep.undo(c);
    expect(w.conn.calls).toEqual([`create ${UID}`, `destroy ${UID}`]);
    await expect(waitRunningStep.verify(c)).rejects.toMatchObject({ reason: 'DomainStartFailed' });
  });

  it('plans: Halted neither starts a spawn nor a respawn; a build undo covers disks and domain', async () => {
    const w = world();
    const names = (s: NodeStep[]) => s.map((x) => x.name);
    expect(names(spawnPlan(ctx(w, 'Halted').inst))).toEqual(['define']);
    expect(names(respawnPlan(ctx(w, 'Halted').inst))).not.toContain('start');
    expect(names(respawnPlan(ctx(w).inst))).toEqual([
      'networking',
      'block_devices',
      'config_drive',
      'define',
      'start',
      'wait_running',
    ]);
    const c = ctx(w);
    await runSteps([...buildUndoPlan().slice(1), startStep], c);
    await undoSteps(buildUndoPlan(), c);
    expect(w.conn.domains.size).toBe(0);
    expect(w.host.files.has(file(w, 'root.qcow2'))).toBe(false);
  });
});
