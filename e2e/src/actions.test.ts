// Day-2 actions on a real guest, as a user asks for them (kubectl create of InstanceActions):
// each moves the guest as it says — a reboot is a new boot id, a paused guest stops answering
// and resumes the same boot, a stopped one stays off, a rebuild keeps address, MAC and identity
// on a fresh root disk — refusals come at once with their reason, and the history records who
// asked, each step with its times, and the result.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { ConditionType } from '@kova/crds';
import { until } from '@kova/hack';
import { Actions } from './actions.js';
import { ConsoleClient, Output } from './console.js';
import { startCluster, type Cluster } from './cluster.js';
import { Instances, type Instance } from './instances.js';

const VM = 'act-vm';
/** A second guest whose console stays open, idle, while the rest of the suite runs. */
const IDLE = 'act-idle';
const IDLE_MS = 120_000;
let idle: { p: ChildProcessWithoutNullStreams; out: Output; since: number };
let cluster: Cluster;
let vms: Instances;
let act: Actions;
let inst: Instance;
let bootId: string;

beforeAll(async () => {
  cluster = await startCluster({
    suite: 'actions',
    agentEnv: { KOVA_SHUTDOWN_TIMEOUT_SECONDS: '5', KOVA_RESYNC_SECONDS: '3' },
  });
  vms = new Instances(cluster);
  act = new Actions(cluster);
  await vms.create(VM, { runStrategy: 'Manual' });
  await vms.create(IDLE, { runStrategy: 'Manual' });
  inst = await vms.phase(VM, 'Active');
  await vms.phase(IDLE, 'Active');
  bootId = await act.answer(inst, '/boot-id');
}, 300_000);

afterAll(async () => {
  await cluster?.stop();
});

const node = () => inst.status?.nodeName as string;
const connected = async (p: ChildProcessWithoutNullStreams) => {
  const out = new Output(p.stdout);
  await new Output(p.stderr).waitFor('Connected to the serial console');
  return out;
};
const exitCode = async (p: ChildProcessWithoutNullStreams) => (await once(p, 'exit'))[0];
const newBoot = async () => {
  const id = await act.answer(inst, '/boot-id');
  expect(id).not.toBe(bootId);
  bootId = id;
};
const ready = async () => vms.condition(await vms.get(VM), ConditionType.Ready);

describe('actions move the guest', () => {
  it('Reboot shuts the guest down and boots it again; the action records its steps and who asked', async () => {
    const a = await act.succeed(VM, 'Reboot');
    await newBoot();
    expect(a.spec.requestedBy).toBe(await act.whoami());
    expect(a.status?.reason).toBe('Succeeded');
    expect(a.status?.steps?.map((s) => [s.name, s.phase])).toEqual([
      ['Shutdown', 'Succeeded'],
      ['PowerOn', 'Succeeded'],
    ]);
    for (const s of a.status?.steps ?? [])
      expect(Date.parse(s.completionTime as string)).toBeGreaterThanOrEqual(
        Date.parse(s.startTime as string),
      );
    const after = await vms.get(VM);
    expect(after?.status?.task).toBeUndefined();
    expect((await ready())?.status).toBe('True');
  });

  it('Reboot with hard resets it at once (PowerOff, PowerOn)', async () => {
    const a = await act.succeed(VM, 'Reboot', { hard: true });
    expect(a.status?.steps?.map((s) => s.name)).toEqual(['PowerOff', 'PowerOn']);
    await newBoot();
  });

  it('Pause freezes the guest (no answer, Ready False); Unpause resumes the same boot', async () => {
    await act.succeed(VM, 'Pause');
    const paused = await vms.get(VM);
    expect(paused?.status?.powerState).toBe('Paused');
    expect(vms.condition(paused, ConditionType.Ready)?.reason).toBe('Paused');
    expect(await act.guest(inst, '/boot-id')).toBe('');
    await act.succeed(VM, 'Unpause');
    expect(await act.answer(inst, '/boot-id')).toBe(bootId);
    expect((await vms.get(VM))?.status?.powerState).toBe('Running');
  });

  it('Stop powers it off and RerunOnFailure keeps it off; Start boots it', async () => {
    await vms.setRunStrategy(VM, 'RerunOnFailure');
    await act.succeed(VM, 'Stop');
    const stopped = await vms.phase(VM, 'Stopped');
    expect(vms.condition(stopped, ConditionType.Ready)?.reason).toBe('PoweredOff');
    // Two resyncs later the agent has still not started it.
    await new Promise((r) => setTimeout(r, 7000));
    expect(await vms.domainState(node(), inst)).toBe('shut off');
    expect((await vms.get(VM))?.status?.phase).toBe('Stopped');
    await act.succeed(VM, 'Start');
    expect((await vms.phase(VM, 'Active')).status?.powerState).toBe('Running');
    await newBoot();
    await vms.setRunStrategy(VM, 'Manual');
  });

  it('Rebuild replaces the root disk and keeps address, MAC and identity', async () => {
    expect(await act.answer(inst, '/cgi-bin/disk?kept-word')).toBe('kept-word');
    expect(await act.guest(inst, '/cgi-bin/disk')).toBe('kept-word');
    const a = await act.succeed(VM, 'Rebuild');
    expect(a.status?.steps?.map((s) => s.name)).toEqual(['Shutdown', 'ReplaceRootDisk', 'PowerOn']);
    await newBoot();
    const after = (await vms.get(VM)) as Instance;
    expect(after.status?.interfaces).toEqual(inst.status?.interfaces);
    expect(await act.guest(inst, '/')).toBe(inst.metadata.uid);
    expect(await act.guest(inst, '/cgi-bin/disk')).toBe('');
  });
});

describe('the serial console', () => {
  let consoles: ConsoleClient;
  beforeAll(() => {
    consoles = new ConsoleClient(cluster, act);
  });

  it('opens a console on a second guest, to be left idle for two minutes', async () => {
    const p = consoles.plugin(['console', IDLE]);
    idle = { p, out: await connected(p), since: Date.now() };
    p.stdin.write('\necho open-$((1+1))\n');
    await idle.out.waitFor('open-2');
  });

  it('kubectl kova console: a command typed into the guest shell is answered', async () => {
    const p = consoles.plugin(['console', VM]);
    const out = await connected(p);
    p.stdin.write('\necho kova-$((6*7))\n');
    await out.waitFor('kova-42');
    p.stdin.end();
    expect(await exitCode(p)).toBe(0);
  });

  it('stays up under a 10 MB output flood and answers after it', async () => {
    const p = consoles.plugin(['console', VM]);
    const out = await connected(p);
    const before = out.bytes;
    p.stdin.write("head -c 10485760 /dev/zero | tr '\\0' x; echo; echo flood-$((2+3))\n");
    await out.waitFor('flood-5', 600_000);
    expect(out.bytes - before).toBeGreaterThanOrEqual(10 * 1024 * 1024);
    p.stdin.write('echo after-$((3+4))\n');
    await out.waitFor('after-7');
    p.stdin.end();
    expect(await exitCode(p)).toBe(0);
  }, 600_000);

  it('kubectl kova console-log prints what the console printed, --tail its last lines', async () => {
    const all = consoles.plugin(['console-log', VM]);
    const log = new Output(all.stdout);
    expect(await exitCode(all)).toBe(0);
    expect(log.text).toContain('after-7');
    const tail = consoles.plugin(['console-log', VM, '--tail', '2']);
    const last = new Output(tail.stdout);
    expect(await exitCode(tail)).toBe(0);
    expect(last.text.split('\n').length).toBeLessThanOrEqual(2);
    expect(last.text).toContain('after-7');
  });

  it('the node lets in only the one connection that presents the ticket, once', async () => {
    const s = await consoles.session(VM);
    const hello = (ticket: string) =>
      consoles.hello(s.console.endpoint, { namespace: cluster.namespace, action: s.name, ticket });
    expect((await hello('0'.repeat(64))).answer).toMatchObject({
      ok: false,
      reason: 'Unauthorized',
    });
    const right = await hello(s.ticket);
    expect(right.answer).toEqual({ ok: true });
    const der = right.socket.getPeerX509Certificate()?.raw as Buffer;
    expect(createHash('sha256').update(der).digest('hex')).toBe(s.console.certSHA256);
    expect((await hello(s.ticket)).answer).toMatchObject({ ok: false, reason: 'Unauthorized' });
    right.socket.end();
    const done = await act.finished(s.name);
    expect([done.status?.phase, done.status?.message]).toEqual([
      'Succeeded',
      expect.stringMatching(/^console session of [\d.]+s: \d+ bytes in, \d+ bytes out$/),
    ]);
  });

  it('refuses, at the API server, a user who may create actions but not open consoles', async () => {
    await act.kubectl([
      'create',
      'role',
      'actions-only',
      '--verb=create,get,list,watch',
      '--resource=instanceactions.compute.kova.dev,instances.compute.kova.dev',
    ]);
    await act.kubectl([
      'create',
      'rolebinding',
      'bob-actions',
      '--role=actions-only',
      '--user=bob',
    ]);
    const body = (action: string) =>
      JSON.stringify({
        apiVersion: 'compute.kova.dev/v1alpha1',
        kind: 'InstanceAction',
        metadata: { generateName: 'bob-' },
        spec: { instance: VM, action, requestedBy: 'bob', ticketSHA256: 'a'.repeat(64) },
      });
    await expect(act.kubectl(['create', '--as=bob', '-f', '-'], body('Console'))).rejects.toThrow(
      `bob may not open the serial console (create instances/console) of Instance ${VM}`,
    );
    await expect(
      act.kubectl(['create', '--as=bob', '-f', '-'], body('ConsoleLog')),
    ).rejects.toThrow('bob may not read the console output (get instances/consolelog)');
  });
});

describe('refusals and the history', () => {
  const refused = async (instance: string, action: string, reason: string) => {
    const started = Date.now();
    const a = await act.finished(await act.request(instance, action));
    expect([a.status?.phase, a.status?.reason]).toEqual(['Failed', reason]);
    expect(Date.now() - started).toBeLessThan(5000);
    return a;
  };

  it('refuses at once what makes no sense in the current state, saying why', async () => {
    expect((await refused(VM, 'Unpause', 'InvalidState')).status?.message).toContain('Running');
    expect((await refused(VM, 'Start', 'InvalidState')).status?.message).toContain(
      'already running',
    );
    await refused('no-such-vm', 'Reboot', 'InstanceNotFound');
  });

  it('refuses what runStrategy would undo', async () => {
    await vms.setRunStrategy(VM, 'Always');
    const a = await refused(VM, 'Stop', 'RunStrategyConflict');
    expect(a.status?.message).toContain('runStrategy Always');
    await vms.setRunStrategy(VM, 'Manual');
  });

  it('refuses a second action while one is in flight', async () => {
    const reboot = await act.request(VM, 'Reboot');
    const pause = await act.finished(await act.request(VM, 'Pause'));
    expect(pause.status?.reason).toBe('ActionInProgress');
    expect(pause.status?.message).toContain(reboot);
    expect((await act.finished(reboot)).status?.phase).toBe('Succeeded');
    await newBoot();
  });

  it('the API server refuses an action that names another user as requester', async () => {
    const body = {
      apiVersion: 'compute.kova.dev/v1alpha1',
      kind: 'InstanceAction',
      metadata: { generateName: 'forged-' },
      spec: { instance: VM, action: 'Reboot', requestedBy: 'mallory' },
    };
    await expect(act.kubectl(['create', '-f', '-'], JSON.stringify(body))).rejects.toThrow(
      `spec.requestedBy must be the user creating the action, ${await act.whoami()}`,
    );
  });

  it('the console left idle for two minutes still answers', async () => {
    await new Promise((r) => setTimeout(r, Math.max(0, idle.since + IDLE_MS - Date.now())));
    idle.p.stdin.write('echo idle-$((3+4))\n');
    await idle.out.waitFor('idle-7');
    idle.p.stdin.end();
    expect(await exitCode(idle.p)).toBe(0);
  }, 300_000);

  it('lists the history with kubectl: every action, who asked, the result', async () => {
    const table = await act.kubectl(['get', 'ia', '--field-selector', `spec.instance=${VM}`]);
    const rows = table.trim().split('\n');
    expect(rows[0]).toMatch(/^NAME\s+INSTANCE\s+ACTION\s+PHASE\s+REASON\s+USER\s+AGE/);
    const body = rows.slice(1).map((r) => r.split(/\s+/).slice(1, 6).join(' '));
    const user = await act.whoami();
    const succeeded = (action: string) =>
      body.filter((r) => r === `${VM} ${action} Succeeded Succeeded ${user}`).length;
    expect(
      ['Reboot', 'Pause', 'Unpause', 'Stop', 'Start', 'Rebuild', 'Console', 'ConsoleLog'].map(
        succeeded,
      ),
    ).toEqual([3, 1, 1, 1, 1, 1, 3, 2]);
    expect(body).toContain(`${VM} Stop Failed RunStrategyConflict ${user}`);
    expect(body).toContain(`${VM} Pause Failed ActionInProgress ${user}`);
  });

  it("deleting the Instance removes its history (the actions are the Instance's)", async () => {
    await vms.deleteAndWait(VM);
    const names = () =>
      act.kubectl(['get', 'ia', '--field-selector', `spec.instance=${VM}`, '-o', 'name']);
    await until(
      'the actions to be collected',
      async () => (await names()).trim() === '',
      60_000,
      500,
    );
  });
});
