// InstanceActions on the node against fakes of libvirt, the API server and the host: the steps
// each action takes, the fallback of a soft shutdown, a restarted agent resuming from the steps
// recorded in the action, and a refusal when libvirt's view no longer allows the action.
import { describe, expect, it } from '@jest/globals';
import type { ActionStatus, InstanceActionObject } from '@kova/crds';
import { BuildFault } from '../errors.js';
import { AgentReconciler } from '../instance-reconciler.js';
import { DomainState } from '../libvirt/index.js';
import { instance, UID, world, type World } from '../test-support.js';

const KEY = 'ns/vm';
const running = {
  phase: 'Active' as const,
  powerState: 'Running' as const,
  domainUUID: UID,
  conditions: [
    {
      type: 'Ready',
      status: 'True' as const,
      reason: 'Running',
      message: 'the domain is running',
      lastTransitionTime: '2026-01-01T00:00:00Z',
    },
  ],
};

/** A world whose fake API also holds InstanceActions handed to this node. */
function withActions(w: World) {
  const store = new Map<string, InstanceActionObject>();
  let rv = 1000;
  /** Returns true to make that write conflict (another writer got there first). */
  let beforeWrite = (_status: ActionStatus) => false;
  const instances = w.d.patcher.mergeStatus;
  w.d.patcher = {
    ...w.d.patcher,
    mergeStatus: async (ref, version, body) => {
      if (ref.plural !== 'instanceactions') return instances(ref, version, body);
      const cur = store.get(ref.name) as InstanceActionObject;
      if (version !== cur.metadata.resourceVersion || beforeWrite(body as ActionStatus))
        throw Object.assign(new Error('the object has been modified'), { code: 409 });
      const next = {
        ...cur,
        metadata: { ...cur.metadata, resourceVersion: String(++rv) },
        status: { ...cur.status, ...(body as ActionStatus) },
      };
      store.set(ref.name, next);
      return next;
    },
  };
  w.d.actions = { list: () => [...store.values()] };
  const request = (action: InstanceActionObject['spec']['action'], name = 'act') => {
    store.set(name, {
      apiVersion: 'compute.kova.dev/v1alpha1',
      kind: 'InstanceAction',
      metadata: { name, namespace: 'ns', uid: `uid-${name}`, resourceVersion: String(++rv) },
      spec: { instance: 'vm', action, requestedBy: 'alice' },
      status: { phase: 'Accepted', instanceUID: UID, nodeName: 'node-a' },
    });
  };
  const update = (status: ActionStatus, name = 'act') => {
    const cur = store.get(name) as InstanceActionObject;
    const metadata = { ...cur.metadata, resourceVersion: String(++rv) };
    store.set(name, { ...cur, metadata, status: { ...cur.status, ...status } });
  };
  const interfere = (f: (status: ActionStatus) => boolean) => (beforeWrite = f);
  return {
    request,
    update,
    interfere,
    get: (name = 'act') => store.get(name) as InstanceActionObject,
  };
}

function setup(status = running, runStrategy = 'Manual') {
  const w = world();
  w.host.files.add(w.d.paths.instanceFile(UID, 'root.qcow2'));
  w.host.bridges.add('br-test');
  w.api.put(instance(status, { runStrategy }));
  const dom = w.conn.addDomain(
    UID,
    status.phase === 'Active' ? DomainState.RUNNING : DomainState.SHUTOFF,
  );
  return { w, dom, ...withActions(w) };
}

const ready = (w: World) => w.api.get('vm')?.status?.conditions?.find((c) => c.type === 'Ready');

describe('InstanceActions on the node', () => {
  it('a soft reboot waits for the guest, powers it off after the timeout, and a restarted agent resumes it', async () => {
    const { w, request, get } = setup();
    request('Reboot');
    const result = await new AgentReconciler(w.d).sync(KEY);
    expect(result).toEqual({ requeueAfterMs: 1000 });
    expect(get().status?.phase).toBe('Running');
    expect(get().status?.steps?.map((s) => [s.name, s.phase])).toEqual([
      ['Shutdown', 'Running'],
      ['PowerOn', 'Pending'],
    ]);
    expect(w.api.get('vm')?.status).toMatchObject({ task: 'Rebooting', action: 'act' });
    expect(ready(w)).toMatchObject({ status: 'False', reason: 'Rebooting' });
    // The guest ignores the button; the timeout passes; a new agent process starts the step it
    // finds Running again (starts are idempotent: one more press), then falls back.
    w.d.config.shutdownTimeoutMs = 0;
    await new AgentReconciler(w.d).sync(KEY);
    expect(w.conn.calls).toEqual([
      `shutdown ${UID}`,
      `shutdown ${UID}`,
      `destroy ${UID}`,
      `create ${UID}`,
    ]);
    expect(get().status).toMatchObject({ phase: 'Succeeded', reason: 'Succeeded' });
    expect(get().status?.steps?.[0]?.message).toBe(
      'the guest did not shut down within 0s; powered it off',
    );
    expect(w.api.get('vm')?.status?.task).toBeUndefined();
    expect(ready(w)).toMatchObject({ status: 'True', reason: 'Running' });
    expect(w.events).toContain('Normal RebootSucceeded');
  });

  it('a Stop leaves the guest off under RerunOnFailure, also when it had to pull the plug', async () => {
    const { w, request, get } = setup(running, 'RerunOnFailure');
    w.d.config.shutdownTimeoutMs = 0;
    request('Stop');
    await new AgentReconciler(w.d).sync(KEY);
    expect(get().status?.phase).toBe('Succeeded');
    expect(w.api.get('vm')?.status).toMatchObject({ phase: 'Stopped', powerState: 'Shutdown' });
    expect(ready(w)).toMatchObject({ reason: 'PoweredOff' });
    await new AgentReconciler(w.d).sync(KEY);
    expect(w.conn.calls.filter((c) => c.startsWith('create'))).toEqual([]);
  });

  it('refuses what libvirt no longer allows (Pause of a guest that is off), touching nothing', async () => {
    const { w, request, get } = setup({
      ...running,
      phase: 'Stopped' as never,
      powerState: 'Shutdown' as never,
    });
    request('Pause');
    await new AgentReconciler(w.d).sync(KEY);
    expect(get().status).toMatchObject({ phase: 'Failed', reason: 'InvalidState' });
    expect(w.conn.calls).toEqual([]);
    expect(w.events).toContain('Warning PauseFailed');
  });

  it('a Rebuild of a running guest replaces only the root disk, then starts it', async () => {
    const { w, request, get, dom } = setup();
    dom.ignoreShutdown = false;
    request('Rebuild');
    await new AgentReconciler(w.d).sync(KEY);
    expect(get().status?.phase).toBe('Succeeded');
    expect(get().status?.steps?.map((s) => s.name)).toEqual([
      'Shutdown',
      'ReplaceRootDisk',
      'PowerOn',
    ]);
    const root = w.d.paths.instanceFile(UID, 'root.qcow2');
    const old = w.d.paths.instanceFile(UID, 'root.replaced.qcow2');
    expect(w.host.calls.slice(0, 3)).toEqual([
      `rename ${root} ${old}`,
      `createDisks ${UID}`,
      `removeFile ${old}`,
    ]);
    expect([...w.host.files].filter((f) => f.includes(UID))).toEqual([root]);
    expect(dom.state).toBe(DomainState.RUNNING);
  });

  it('a Rebuild whose image cannot be fetched is refused before the guest is touched', async () => {
    const { w, request, get, dom } = setup();
    w.cache.fail = new BuildFault('ImageDownloadFailed', 'download failed: 503', true);
    request('Rebuild');
    await new AgentReconciler(w.d).sync(KEY);
    expect(get().status).toMatchObject({
      phase: 'Failed',
      reason: 'ImageDownloadFailed',
      message: 'download failed: 503',
    });
    expect(w.conn.calls).toEqual([]);
    expect(dom.state).toBe(DomainState.RUNNING);
    expect(w.host.calls.filter((x) => x.includes('root'))).toEqual([]);
  });

  it('a concurrent write to the action (the operator owning it) does not wedge its result', async () => {
    const { w, request, get, update, interfere } = setup();
    request('Reboot');
    const r = new AgentReconciler(w.d);
    // Another writer gets in just before the result: that write conflicts, once.
    let once = true;
    interfere((s) => {
      if (s.phase !== 'Succeeded' || !once) return false;
      once = false;
      update({});
      return true;
    });
    w.d.config.shutdownTimeoutMs = 0;
    await expect(r.sync(KEY)).rejects.toThrow('modified');
    await r.sync(KEY);
    expect(get().status?.phase).toBe('Succeeded');
  });

  it('an agent restarted after recording a step Running starts that step again', async () => {
    const { w, request, get, update, dom } = setup(
      { ...running, phase: 'Stopped' as never, powerState: 'Shutdown' as never },
      'Manual',
    );
    dom.state = DomainState.SHUTOFF;
    request('Start');
    // What a process killed between the Running write and the libvirt call leaves behind.
    update({
      phase: 'Running',
      startTime: new Date().toISOString(),
      steps: [{ name: 'PowerOn', phase: 'Running', startTime: new Date().toISOString() }],
    });
    await new AgentReconciler(w.d).sync(KEY);
    expect(w.conn.calls).toEqual([`create ${UID}`]);
    expect(get().status).toMatchObject({ phase: 'Succeeded' });
  });
});
