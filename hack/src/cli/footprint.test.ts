// Teardown's last resort and its final check, on the real libvirtd and kernel: what a run left
// is found by its kova metadata and state dir (never another run's), removed directly, and what
// cannot be removed that way (a directory, a process) is still reported, so "nothing is left"
// is only said when it is true.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { findLeftovers, removeLeftovers, tablesNow, type RunFootprint } from './footprint.js';

const run = promisify(execFile);
const virsh = (...args: string[]) => run('virsh', ['-c', 'qemu:///system', ...args]);
const NODE = 'footprint-test-node';
const BRIDGE = 'kovafptest0';

let dir: string;
let otherDir: string;
let sleeper: ChildProcess;
let userShell: ChildProcess;
/** kova's table, made here as an agent would unless one exists already (another run's). */
let createdTable = false;
const ours = randomUUID();
const theirs = randomUUID();
const tap = `kv${ours.replace(/-/g, '').slice(0, 12)}0`;

/** A defined (not running) domain as the agent writes it: kova metadata and a disk. */
async function defineDomain(uid: string, stateDir: string): Promise<void> {
  const xml = `<domain type='qemu'><name>kova-fp-${uid.slice(0, 8)}</name><uuid>${uid}</uuid>
  <metadata><kova:instance xmlns:kova="https://kova.dev/xmlns/instance/v1" namespace="default"
    name="fp" uid="${uid}" node="${NODE}"/></metadata>
  <memory unit='MiB'>32</memory><os><type arch='x86_64'>hvm</type></os>
  <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
    <source file='${stateDir}/instances/${uid}/root.qcow2'/><target dev='vda' bus='virtio'/></disk>
  </devices></domain>`;
  const file = join(stateDir, `${uid}.xml`);
  await writeFile(file, xml);
  await virsh('define', file);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kova-state-fp-'));
  otherDir = await mkdtemp(join(tmpdir(), 'kova-state-fp-other-'));
  await defineDomain(ours, dir);
  await defineDomain(theirs, otherDir); // same node name, another run's state dir
  await run('ip', ['tuntap', 'add', 'dev', tap, 'mode', 'tap']);
  await run('ip', ['link', 'add', 'name', BRIDGE, 'type', 'bridge']);
  createdTable = !(await tablesNow()).includes('inet kova');
  if (createdTable) await run('nft', ['add', 'table', 'inet', 'kova']);
  sleeper = spawn('sleep', ['300'], { env: { KOVA_STATE_DIR: dir }, stdio: 'ignore' });
  // A user's shell that exported the run's kubeconfig, as npm start tells them to: not the run's.
  userShell = spawn('sleep', ['300'], {
    env: { KUBECONFIG: join(dir, 'kubeconfig') },
    stdio: 'ignore',
  });
});

afterAll(async () => {
  sleeper?.kill('SIGKILL');
  userShell?.kill('SIGKILL');
  for (const uid of [ours, theirs])
    await virsh('undefine', `kova-fp-${uid.slice(0, 8)}`).catch(() => undefined);
  if (createdTable) await run('nft', ['delete', 'table', 'inet', 'kova']).catch(() => undefined);
  for (const dev of [tap, BRIDGE])
    await run('ip', ['link', 'delete', 'dev', dev]).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
  await rm(otherDir, { recursive: true, force: true });
});

const footprint = (): RunFootprint => ({
  nodes: [NODE],
  stateDirs: [dir],
  tempDirs: [dir],
  uids: new Set(),
  bridges: [BRIDGE],
  tables: createdTable ? ['inet kova'] : [],
});

describe("a run's footprint", () => {
  it("finds this run's domain, tap, nftables table, bridge, directory and a process using it", async () => {
    const found = await findLeftovers(footprint());
    expect(found).toEqual([
      { kind: 'domain', name: `kova-fp-${ours.slice(0, 8)}` },
      { kind: 'tap', name: tap },
      ...(createdTable ? [{ kind: 'table', name: 'inet kova' }] : []),
      { kind: 'bridge', name: BRIDGE },
      { kind: 'directory', name: dir },
      { kind: 'process', name: `${sleeper.pid} sleep 300` },
    ]);
  });

  it("removes the domain, tap, table and bridge directly and leaves another run's domain alone", async () => {
    const fp = footprint();
    await removeLeftovers(await findLeftovers(fp));
    expect(await findLeftovers(fp)).toEqual([
      { kind: 'directory', name: dir },
      { kind: 'process', name: `${sleeper.pid} sleep 300` },
    ]);
    expect((await virsh('domstate', theirs)).stdout.trim()).toBe('shut off');
  });

  it('keeps a bridge that still has ports: someone else uses it', async () => {
    await run('ip', ['link', 'add', 'name', BRIDGE, 'type', 'bridge']);
    await run('ip', ['tuntap', 'add', 'dev', tap, 'mode', 'tap']);
    await run('ip', ['link', 'set', 'dev', tap, 'master', BRIDGE]);
    const fp = { ...footprint(), uids: new Set<string>() };
    await removeLeftovers([{ kind: 'bridge', name: BRIDGE }]);
    expect((await findLeftovers(fp)).map((l) => l.kind)).toContain('bridge');
  });
});
