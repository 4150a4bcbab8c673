// The reconciler against fakes of libvirt, the API server and the host: for each phase handler
// and hardening item, the API writes and host calls a sync makes (agent.test.ts runs the same
// agent on real libvirtd and QEMU).
import { describe, expect, it } from '@jest/globals';
import type { InstanceStatus } from '@kova/crds';
import { BuildFault } from './errors.js';
import { AgentReconciler } from './instance-reconciler.js';
import { DomainState, ErrorCode, ShutoffReason } from './libvirt/index.js';
import { instance, NODE, UID, world, type World } from './test-support.js';

const KEY = 'ns/vm';
/** Resolves once `seen` holds, looking every millisecond for up to a second. */
async function until(seen: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !seen(); i++) await new Promise((r) => setTimeout(r, 1));
  if (!seen()) throw new Error('not seen within a second');
}
const root = (w: World) => w.d.paths.instanceFile(UID, 'root.qcow2');
const iso = (w: World) => w.d.paths.instanceFile(UID, 'cidata.iso');
const cond = (s: InstanceStatus | undefined, type: string) =>
  s?.conditions?.find((c) => c.type === type);
const phases = (w: World) => w.api.writes.map((s) => s.phase);
const conflict = () => Object.assign(new Error('the object has been modified'), { code: 409 });
const active = (over: InstanceStatus = {}): InstanceStatus => ({
  phase: 'Active',
  powerState: 'Running',
  domainUUID: UID,
  launchedAt: '2026-01-01T00:00:00Z',
  buildStartedAt: new Date().toISOString(),
  conditions: [
    {
      type: 'NetworkReady',
      status: 'True',
      reason: 'Plugged',
      message: '',
      lastTransitionTime: '2026-01-01T00:00:00Z',
      observedGeneration: 1,
    },
    {
      type: 'Ready',
      status: 'True',
      reason: 'Running',
      message: 'the domain is running',
      lastTransitionTime: '2026-01-01T00:00:00Z',
      observedGeneration: 1,
    },
  ],
  observedGeneration: 1,
  ...over,
});
/** The node of a built Instance: disks and config drive made, bridge up. */
const built = (w: World) => {
  w.host.files.add(root(w));
  w.host.files.add(iso(w));
  w.host.bridges.add('br-test');
};

describe('hand-off and build phases', () => {
  it('takes a Networking Instance with every address over and builds it to Active in one sync, plugging networks once', async () => {
    const w = world();
    w.api.put(instance({ phase: 'Networking' }));
    await new AgentReconciler(w.d).sync(KEY);
    expect(phases(w)).toEqual(['BlockDeviceMapping', 'Spawning', 'Active']);
    // Plugged, disks and config drive made side by side: each once, in no set order.
    expect([...w.host.calls].sort()).toEqual(
      ['buildConfigDrive', `createDisks ${UID}`, `plugNetworks ${UID}`].sort(),
    );
    expect(w.cache.calls).toEqual(['ensure blank']);
    expect(w.conn.calls).toEqual([`defineXML ${UID}`, `create ${UID}`]);
    const s = w.api.get('vm')?.status;
    expect(s).toMatchObject({ phase: 'Active', powerState: 'Running', domainUUID: UID });
    expect(s?.buildStartedAt).toBeDefined();
    for (const t of ['NetworkReady', 'BlockDevicesReady', 'Spawned', 'Ready'])
      expect(cond(s, t)?.status).toBe('True');
    expect(w.events).toContain('Normal Spawned');
  });

  it('sets its node-cleanup finalizer at the hand-off, before it defines the domain', async () => {
    const w = world();
    w.api.put(instance({ phase: 'Networking' }, { finalizers: [] }));
    const defineXML = w.conn.defineXML.bind(w.conn);
    let finalizersAtDefine: string[] | undefined;
    w.conn.defineXML = async (xml: string) => {
      finalizersAtDefine = w.api.get('vm')?.metadata.finalizers;
      return defineXML(xml);
    };
    await new AgentReconciler(w.d).sync(KEY);
    expect(w.api.finalizerWrites).toEqual([['compute.kova.dev/node-cleanup']]);
    expect(finalizersAtDefine).toEqual(['compute.kova.dev/node-cleanup']);
    expect(phases(w)).toEqual(['BlockDeviceMapping', 'Spawning', 'Active']);
  });

  it('makes the disks while the networks are still being plugged', async () => {
    const w = world();
    w.api.put(instance({ phase: 'Networking' }));
    const plug = w.host.plugNetworks.bind(w.host);
    w.host.plugNetworks = async (...args) => {
      // Holds the plug until the disks are being made: a build in sequence never gets there.
      await until(() => w.host.calls.some((c) => c.startsWith('createDisks')));
      return plug(...args);
    };
    await new AgentReconciler(w.d).sync(KEY);
    expect(phases(w)).toEqual(['BlockDeviceMapping', 'Spawning', 'Active']);
  });

  it('defines no domain and reports nothing when its finalizer cannot be set, and retries', async () => {
    const w = world();
    w.api.put(instance({ phase: 'Networking' }, { finalizers: [] }));
    w.api.failFinalizers.push(conflict());
    await expect(new AgentReconciler(w.d).sync(KEY)).rejects.toThrow('modified');
    expect(w.conn.calls).toEqual([]);
    expect(w.api.writes).toEqual([]);
    await new AgentReconciler(w.d).sync(KEY);
    expect(phases(w)).toEqual(['BlockDeviceMapping', 'Spawning', 'Active']);
  });

  it('undoes the disks made meanwhile when plugging the networks fails', async () => {
    const w = world();
    w.api.put(instance({ phase: 'Networking' }));
    w.host.plugNetworks = async () => {
      await until(() => w.host.files.has(iso(w)));
      throw new BuildFault('BridgeCreateFailed', 'could not set up bridge br-test', true);
    };
    await new AgentReconciler(w.d).sync(KEY);
    const s = w.api.get('vm')?.status;
    expect(s?.fault?.reason).toBe('BridgeCreateFailed');
    expect(cond(s, 'NetworkReady')).toMatchObject({
      status: 'False',
      reason: 'BridgeCreateFailed',
    });
    expect(w.host.calls).toContain(`removeInstanceFiles ${UID}`);
    expect(w.host.files.has(root(w))).toBe(false);
  });

  it('leaves a Networking Instance alone until every network has an address', async () => {
    const w = world();
    w.api.put(instance({ phase: 'Networking', interfaces: [] }));
    await new AgentReconciler(w.d).sync(KEY);
    expect(w.api.writes).toEqual([]);
    expect(w.host.calls).toEqual([]);
  });

  it('ignores an Instance bound to another node', async () => {
    const w = world();
    w.api.put(instance({ phase: 'Networking', nodeName: 'node-b' }));
    await new AgentReconciler(w.d).sync(KEY);
    expect(w.api.writes).toEqual([]);
  });

  it('BlockDeviceMapping makes only the disks still missing, then moves to Spawning', async () => {
    const w = world();
    w.host.files.add(root(w));
    w.host.bridges.add('br-test');
    w.api.put(instance({ phase: 'BlockDeviceMapping' }));
    await new AgentReconciler(w.d).sync(KEY);
    expect(phases(w)[0]).toBe('Spawning');
    expect(w.cache.calls).toEqual([]);
    expect(w.host.calls).toEqual(['buildConfigDrive']);
  });

  it('Spawning adopts a running domain instead of defining or starting it again', async () => {
    const w = world();
    built(w);
    w.conn.addDomain(UID, DomainState.RUNNING);
    w.api.put(instance({ phase: 'Spawning' }));
    await new AgentReconciler(w.d).sync(KEY);
    expect(w.conn.calls).toEqual([]);
    expect(phases(w)).toEqual(['Active']);
  });

  it('Spawning under Halted defines the domain without starting it and reports Stopped', async () => {
    const w = world();
    built(w);
    w.api.put(instance({ phase: 'Spawning' }, { runStrategy: 'Halted' }));
    await new AgentReconciler(w.d).sync(KEY);
    expect(w.conn.calls).toEqual([`defineXML ${UID}`]);
    expect(w.api.get('vm')?.status).toMatchObject({ phase: 'Stopped', powerState: 'Shutdown' });
    expect(cond(w.api.get('vm')?.status, 'Ready')).toMatchObject({
      status: 'False',
      reason: 'Halted',
    });
  });

  it('waits for the running event rather than polling: a domain that starts late is seen on its event', async () => {
    const w = world();
    built(w);
    const dom = w.conn.addDomain(UID, DomainState.SHUTOFF);
    // QEMU takes a while: create() returns, the domain reaches RUNNING 300 ms later with an event.
    dom.create = async () => {
      setTimeout(() => {
        dom.state = DomainState.RUNNING;
        w.conn.emit({ uuid: UID, name: dom.name, event: 2, detail: 0 });
      }, 300);
    };
    w.api.put(instance({ phase: 'Spawning' }));
    const t0 = Date.now();
    await new AgentReconciler(w.d).sync(KEY);
    // The poll fallback is 1 s: seeing it well before means the event woke the wait.
    expect(Date.now() - t0).toBeLessThan(800);
    expect(phases(w)).toEqual(['Active']);
  });
});

describe('build faults', () => {
  it('a fault undoes the build and reports it once, with the failed step condition and nothing stale', async () => {
    const w = world();
    built(w);
    w.conn.addDomain(UID, DomainState.SHUTOFF).failCreate = Object.assign(new Error('no KVM'), {
      code: 1,
    });
    w.api.put(instance({ phase: 'Spawning', launchedAt: '2026-01-01T00:00:00Z' }));
    const r = new AgentReconciler(w.d);
    await r.sync(KEY);
    expect(w.conn.calls).toContain(`undefine ${UID}`);
    expect(w.host.calls).toContain(`removeInstanceFiles ${UID}`);
    const s = w.api.get('vm')?.status;
    expect(s?.fault).toMatchObject({
      reason: 'DomainStartFailed',
      retryable: true,
      node: 'node-a',
    });
    expect(cond(s, 'Spawned')).toMatchObject({ status: 'False', reason: 'DomainStartFailed' });
    expect(s?.launchedAt).toBeUndefined();
    const writes = w.api.writes.length;
    await r.sync(KEY);
    expect(w.api.writes.length).toBe(writes);
  });

  it('#12.2 a fault write refused once (409) is written on the next sync, without building again', async () => {
    const w = world();
    w.host.bridges.add('br-test');
    w.cache.fail = new BuildFault('ImageDownloadFailed', 'download cut', true);
    w.api.put(instance({ phase: 'BlockDeviceMapping' }));
    const r = new AgentReconciler(w.d);
    w.api.failWrites.push(conflict());
    await expect(r.sync(KEY)).rejects.toMatchObject({ code: 409 });
    expect(w.api.get('vm')?.status?.fault).toBeUndefined();
    await r.sync(KEY);
    expect(w.api.get('vm')?.status?.fault).toMatchObject({ reason: 'ImageDownloadFailed' });
    expect(w.cache.calls).toEqual(['ensure blank']);
  });

  it('#12.2 an undo that fails (libvirtd away) is retried before the fault is written', async () => {
    const w = world();
    w.host.bridges.add('br-test');
    w.cache.fail = new BuildFault('ImageDownloadFailed', 'download cut', true);
    w.host.failRemove.push(new Error('EBUSY'));
    w.api.put(instance({ phase: 'BlockDeviceMapping' }));
    const r = new AgentReconciler(w.d);
    await expect(r.sync(KEY)).rejects.toThrow('EBUSY');
    expect(w.api.get('vm')?.status?.fault).toBeUndefined();
    await r.sync(KEY);
    expect(w.host.calls.filter((c) => c.startsWith('removeInstanceFiles'))).toHaveLength(2);
    expect(w.api.get('vm')?.status?.fault).toMatchObject({ reason: 'ImageDownloadFailed' });
  });

  it('#12.2 a build past its overall timeout becomes the retryable fault BuildTimedOut', async () => {
    const w = world({ buildTimeoutMs: 100 });
    w.host.bridges.add('br-test');
    let release!: () => void;
    w.cache.hold = new Promise((r) => (release = r));
    w.api.put(instance({ phase: 'BlockDeviceMapping', buildStartedAt: new Date().toISOString() }));
    const syncing = new AgentReconciler(w.d).sync(KEY);
    // The undo waits for the abandoned download to end, so it never races it.
    await new Promise((r) => setTimeout(r, 300));
    expect(w.api.get('vm')?.status?.fault).toBeUndefined();
    release();
    await syncing;
    expect(w.api.get('vm')?.status?.fault).toMatchObject({
      reason: 'BuildTimedOut',
      retryable: true,
    });
    // The abandoned download finishing later does not go on to make disks.
    await new Promise((r) => setTimeout(r, 20));
    expect(w.host.calls).not.toContain(`createDisks ${UID}`);
  });
});

describe('faults and the build clock', () => {
  it('builds an Instance afresh when it comes back to this node after its fault was handled', async () => {
    const w = world();
    w.host.bridges.add('br-test');
    w.cache.fail = new BuildFault('ImageDownloadFailed', 'download cut', true);
    w.api.put(instance({ phase: 'BlockDeviceMapping' }));
    const r = new AgentReconciler(w.d);
    await r.sync(KEY);
    expect(w.api.get('vm')?.status?.fault).toMatchObject({ reason: 'ImageDownloadFailed' });
    // The operator reschedules it, and this node is the only one left: back in Networking.
    w.cache.fail = undefined;
    const back = w.api.get('vm')!;
    w.api.put({ ...back, status: { ...instance({}).status, phase: 'Networking' } });
    await r.sync(KEY);
    expect(w.api.get('vm')?.status?.phase).toBe('Active');
  });

  it('a phase that starts past the build deadline with nothing left to do finishes, undoing nothing', async () => {
    const w = world({ buildTimeoutMs: 100 });
    built(w);
    w.conn.addDomain(UID, DomainState.RUNNING);
    const longAgo = new Date(Date.now() - 3_600_000).toISOString();
    w.api.put(instance({ phase: 'Spawning', buildStartedAt: longAgo }));
    await new AgentReconciler(w.d).sync(KEY);
    expect(w.api.get('vm')?.status?.fault).toBeUndefined();
    expect(w.api.get('vm')?.status?.phase).toBe('Active');
    expect(w.host.calls.filter((c) => c.startsWith('removeInstanceFiles'))).toEqual([]);
  });
});

describe('power (Active and Stopped)', () => {
  it('writes nothing when the running domain is what the status says', async () => {
    const w = world();
    built(w);
    w.conn.addDomain(UID, DomainState.RUNNING);
    w.api.put(instance(active()));
    await new AgentReconciler(w.d).sync(KEY);
    expect(w.api.writes).toEqual([]);
    expect(w.conn.calls).toEqual([]);
  });

  it('restarts a crashed domain under Always, recording the restart in status.restartBackoff', async () => {
    const w = world();
    built(w);
    w.conn.addDomain(UID, DomainState.SHUTOFF, ShutoffReason.CRASHED);
    w.api.put(instance(active()));
    await new AgentReconciler(w.d).sync(KEY);
    expect(w.conn.calls).toEqual([`create ${UID}`]);
    const s = w.api.get('vm')?.status;
    expect(s).toMatchObject({
      phase: 'Active',
      powerState: 'Running',
      restartBackoff: { count: 1 },
    });
    expect(w.api.writes[0]).toMatchObject({ powerState: 'Shutdown' });
  });

  it('plugs the networks before restarting a domain (a rebooted node has lost its bridges)', async () => {
    const w = world();
    built(w);
    w.host.bridges.clear();
    w.conn.addDomain(UID, DomainState.SHUTOFF, ShutoffReason.CRASHED);
    w.api.put(instance(active()));
    await new AgentReconciler(w.d).sync(KEY);
    expect(w.host.bridges.has('br-test')).toBe(true);
    expect(w.conn.calls).toEqual([`create ${UID}`]);
  });

  it('#2 the crash-restart backoff survives an agent restart: a new reconciler does not restart at once', async () => {
    const w = world();
    built(w);
    w.conn.addDomain(UID, DomainState.SHUTOFF, ShutoffReason.CRASHED);
    const last = new Date(Date.now() - 500).toISOString();
    w.api.put(instance(active({ restartBackoff: { count: 3, lastRestartTime: last } })));
    const r = await new AgentReconciler(w.d).sync(KEY);
    expect(w.conn.calls).toEqual([]);
    expect(r?.requeueAfterMs).toBeGreaterThan(3000);
  });

  it('#12.10 Halted asks the guest to shut down without holding the worker, and destroys it after the grace', async () => {
    const w = world({ shutdownTimeoutMs: 50 });
    built(w);
    w.conn.addDomain(UID, DomainState.RUNNING);
    w.api.put(instance(active(), { runStrategy: 'Halted' }));
    const rec = new AgentReconciler(w.d);
    expect(await rec.sync(KEY)).toEqual({ requeueAfterMs: 1000 });
    expect(w.conn.calls).toEqual([`shutdown ${UID}`]);
    await new Promise((r) => setTimeout(r, 60));
    await rec.sync(KEY);
    expect(w.conn.calls).toEqual([`shutdown ${UID}`, `destroy ${UID}`]);
    await rec.sync(KEY);
    expect(w.api.get('vm')?.status).toMatchObject({ phase: 'Stopped', powerState: 'Shutdown' });
  });

  it('#4 records the generation of a runStrategy change: Halted → Always writes Ready=True at the new generation', async () => {
    const w = world();
    built(w);
    w.conn.addDomain(UID, DomainState.SHUTOFF, ShutoffReason.DESTROYED);
    const stopped = active({ phase: 'Stopped', powerState: 'Shutdown' });
    stopped.conditions = [
      {
        type: 'Ready',
        status: 'False',
        reason: 'Halted',
        message: '',
        lastTransitionTime: '2026-01-01T00:00:00Z',
        observedGeneration: 1,
      },
    ];
    w.api.put(instance(stopped, { generation: 2 }));
    await new AgentReconciler(w.d).sync(KEY);
    const s = w.api.get('vm')?.status;
    expect(cond(s, 'Ready')).toMatchObject({ status: 'True', observedGeneration: 2 });
    expect(s?.observedGeneration).toBe(2);
    expect(s?.restartBackoff).toBeUndefined();
  });

  it('#12.10 a guest in PMSUSPENDED is reported Suspended and not started', async () => {
    const w = world();
    built(w);
    w.conn.addDomain(UID, DomainState.PMSUSPENDED);
    w.api.put(instance(active()));
    await new AgentReconciler(w.d).sync(KEY);
    expect(w.conn.calls).toEqual([]);
    expect(w.api.get('vm')?.status?.powerState).toBe('Suspended');
    expect(cond(w.api.get('vm')?.status, 'Ready')).toMatchObject({
      status: 'False',
      reason: 'Suspended',
    });
  });
});

describe('#12.7 respawning a vanished domain', () => {
  it('defines and starts it again around its existing root disk, without creating or removing disks', async () => {
    const w = world();
    built(w);
    w.api.put(instance(active()));
    await new AgentReconciler(w.d).sync(KEY);
    expect(w.conn.calls).toEqual([`defineXML ${UID}`, `create ${UID}`]);
    expect(w.host.calls).toEqual([`plugNetworks ${UID}`]); // its bridge, no disk made or removed
    expect(w.api.get('vm')?.status).toMatchObject({ phase: 'Active', powerState: 'Running' });
    expect(phases(w)).not.toContain('Spawning');
  });

  it('#12.7 never removes root.qcow2 when the respawn fails, and reports no build fault', async () => {
    const w = world();
    built(w);
    w.api.put(instance(active()));
    // QEMU refuses to start the redefined domain.
    const define = w.conn.defineXML.bind(w.conn);
    w.conn.defineXML = async (xml) => {
      const d = await define(xml);
      d.failCreate = Object.assign(new Error('QEMU failed'), { code: 1 });
      return d;
    };
    const r = await new AgentReconciler(w.d).sync(KEY);
    expect(w.host.files.has(root(w))).toBe(true);
    expect(w.host.calls).not.toContain(`removeInstanceFiles ${UID}`);
    expect(w.api.get('vm')?.status?.fault).toBeUndefined();
    expect(cond(w.api.get('vm')?.status, 'Ready')).toMatchObject({
      status: 'False',
      reason: 'DomainStartFailed',
    });
    expect(r?.requeueAfterMs).toBe(30_000);
  });

  it('#12.7 does not make a fresh root disk when the old one is gone', async () => {
    const w = world();
    w.host.bridges.add('br-test');
    w.api.put(instance(active()));
    await new AgentReconciler(w.d).sync(KEY);
    expect(w.host.calls).not.toContain(`createDisks ${UID}`);
    expect(w.conn.calls).toEqual([]);
    expect(cond(w.api.get('vm')?.status, 'Ready')).toMatchObject({ reason: 'RootDiskMissing' });
  });

  it('#12.7 honours Halted: defines the domain again but does not start it', async () => {
    const w = world();
    built(w);
    w.api.put(
      instance(active({ phase: 'Stopped', powerState: 'Shutdown' }), { runStrategy: 'Halted' }),
    );
    await new AgentReconciler(w.d).sync(KEY);
    expect(w.conn.calls).toEqual([`defineXML ${UID}`]);
    expect(w.api.get('vm')?.status).toMatchObject({ phase: 'Stopped', powerState: 'Shutdown' });
  });
});

describe('#13.5 what the Instance was given at binding', () => {
  /** A record unlike the world's Flavor nano (1 vCPU, 128 MiB, no swap) and Image blank. */
  const given = {
    flavor: { name: 'nano', vcpus: 2, memoryMiB: 256, rootDiskGiB: 1, swapMiB: 64 },
    image: { name: 'blank', sha256: 'b'.repeat(64), format: 'qcow2' },
  };
  /**
   * The world with its Flavor deleted, the domain XML libvirt was given kept, and the recorded
   * content cached on this node (the Image itself now names other content).
   */
  const flavorGone = () => {
    const w = world();
    w.d.flavors = { get: () => undefined };
    const xml: string[] = [];
    const define = w.conn.defineXML.bind(w.conn);
    w.conn.defineXML = async (x) => (xml.push(x), define(x));
    w.host.files.add(w.d.paths.image(given.image.sha256));
    return { w, xml };
  };

  it('builds the domain and disks from the record when the Flavor is gone', async () => {
    const { w, xml } = flavorGone();
    w.api.put(instance({ phase: 'Networking', ...given }));
    await new AgentReconciler(w.d).sync(KEY);
    expect(phases(w)).toEqual(['BlockDeviceMapping', 'Spawning', 'Active']);
    expect(xml[0]).toContain('<vcpu>2</vcpu>');
    expect(xml[0]).toContain('<memory unit="MiB">256</memory>');
    expect(w.host.files.has(w.d.paths.instanceFile(UID, 'swap.qcow2'))).toBe(true);
    expect(w.host.files.has(`/cache/${given.image.sha256}.img`)).toBe(true);
  });

  it('respawns a vanished domain from the record when the Flavor is gone', async () => {
    const { w, xml } = flavorGone();
    built(w);
    w.host.files.add(w.d.paths.instanceFile(UID, 'swap.qcow2'));
    w.api.put(instance(active(given)));
    await new AgentReconciler(w.d).sync(KEY);
    expect(w.conn.calls).toEqual([`defineXML ${UID}`, `create ${UID}`]);
    expect(xml[0]).toContain('<memory unit="MiB">256</memory>');
  });

  it('refuses with ImageChanged, fetching nothing, when the Image now names content this node lacks', async () => {
    const w = world();
    w.api.put(instance({ phase: 'Networking', ...given }));
    await new AgentReconciler(w.d).sync(KEY);
    const fault = w.api.get('vm')?.status?.fault;
    expect(fault).toMatchObject({ reason: 'ImageChanged', retryable: false, node: NODE });
    expect(fault?.message).toContain(`bound to ${given.image.sha256}`);
    expect(w.cache.calls).toEqual([]);
    expect(w.conn.calls).toEqual([]);
  });
});

describe('#12.12 no stale status on failed and deleted Instances', () => {
  it('#12.12 a failed (Error) Instance loses the agent’s NetworkReady=True, Ready, powerState and launchedAt', async () => {
    const w = world();
    w.api.put(
      instance(active({ phase: 'Error', fault: { reason: 'NoValidHost', message: 'no host' } })),
    );
    await new AgentReconciler(w.d).sync(KEY);
    const s = w.api.get('vm')?.status;
    expect(s?.powerState).toBeUndefined();
    expect(s?.launchedAt).toBeUndefined();
    expect(cond(s, 'NetworkReady')?.status).toBe('False');
    expect(cond(s, 'Ready')).toMatchObject({ status: 'False', reason: 'InstanceFailed' });
  });

  it('#12.12 a Deleting Instance gets Ready=False reason Deleting before its domain goes', async () => {
    const w = world();
    built(w);
    w.conn.addDomain(UID, DomainState.SHUTOFF);
    w.api.put(
      instance(active({ phase: 'Deleting' }), { deletionTimestamp: '2026-01-01T00:00:00Z' }),
    );
    await new AgentReconciler(w.d).sync(KEY);
    expect(cond(w.api.writes[0], 'Ready')).toMatchObject({ status: 'False', reason: 'Deleting' });
    expect(w.conn.calls).toEqual([`undefine ${UID}`]);
    expect(w.api.finalizerWrites).toEqual([[]]);
  });

  it('#12.10 delete shuts a running guest down without holding the worker, destroying it after the grace', async () => {
    const w = world({ shutdownTimeoutMs: 30 });
    built(w);
    w.conn.addDomain(UID, DomainState.RUNNING);
    w.api.put(instance(active(), { deletionTimestamp: '2026-01-01T00:00:00Z' }));
    const r = new AgentReconciler(w.d);
    expect(await r.sync(KEY)).toEqual({ requeueAfterMs: 1000 });
    expect(w.conn.calls).toEqual([`shutdown ${UID}`]);
    await new Promise((res) => setTimeout(res, 40));
    await r.sync(KEY);
    expect(w.conn.calls).toEqual([`shutdown ${UID}`, `destroy ${UID}`, `undefine ${UID}`]);
    expect(w.api.finalizerWrites).toEqual([[]]);
  });

  it('#12.12 an Instance already gone (404 on the finalizer or status write) ends the sync without an error', async () => {
    const w = world();
    w.api.put(instance(active(), { deletionTimestamp: '2026-01-01T00:00:00Z' }));
    w.api.failFinalizers.push(Object.assign(new Error('not found'), { code: 404 }));
    await expect(new AgentReconciler(w.d).sync(KEY)).resolves.toBeUndefined();
    const w2 = world();
    w2.api.put(instance(active(), { deletionTimestamp: '2026-01-01T00:00:00Z' }));
    w2.api.failWrites.push(Object.assign(new Error('not found'), { code: 404 }));
    await expect(new AgentReconciler(w2.d).sync(KEY)).resolves.toBeUndefined();
    expect(w2.api.finalizerWrites).toEqual([]);
  });

  it('#12.10 a delete during a build waits for it without blocking, and the build stops at its next step', async () => {
    const w = world();
    w.host.bridges.add('br-test');
    let release!: () => void;
    w.cache.hold = new Promise((r) => (release = r));
    w.api.put(instance({ phase: 'BlockDeviceMapping' }));
    const r = new AgentReconciler(w.d);
    const building = r.sync(KEY);
    await new Promise((res) => setTimeout(res, 10));
    const cur = w.api.get('vm')!;
    w.api.put({
      ...cur,
      metadata: { ...cur.metadata, deletionTimestamp: new Date().toISOString() },
    });
    expect(await r.sync(KEY)).toEqual({ requeueAfterMs: 500 });
    release();
    await building;
    expect(w.host.calls).not.toContain(`createDisks ${UID}`);
    await r.sync(KEY);
    expect(w.api.finalizerWrites).toEqual([[]]);
  });
});

it('treats OPERATION_INVALID on a start raced by a lifecycle event as already started', async () => {
  const w = world();
  built(w);
  const dom = w.conn.addDomain(UID, DomainState.SHUTOFF, ShutoffReason.CRASHED);
  dom.failCreate = Object.assign(new Error('already running'), {
    code: ErrorCode.OPERATION_INVALID,
  });
  dom.state = DomainState.SHUTOFF;
  const create = dom.create.bind(dom);
  dom.create = async () => {
    dom.state = DomainState.RUNNING;
    await create();
  };
  w.api.put(instance(active()));
  await new AgentReconciler(w.d).sync(KEY);
  expect(w.api.get('vm')?.status).toMatchObject({ phase: 'Active', powerState: 'Running' });
});
