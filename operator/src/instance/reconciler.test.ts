// Every operator handler against fakes, in the manner of sample-controller's expected-actions
// tests: given a view, which API writes (status, finalizers, addresses) and Events come out.
import { beforeEach, describe, expect, it } from '@jest/globals';
import type { EventRecorder, Patcher } from '@kova/controller-kit';
import { logger } from '@kova/controller-kit';
import {
  NODE_CLEANUP_FINALIZER,
  OPERATOR_FINALIZER,
  type IFlavor,
  type IImage,
  type INetwork,
  type InstanceObject,
  type InstanceStatus,
} from '@kova/crds';
import { Registry } from 'prom-client';
import { Claims } from '../claims.js';
import type { ClusterState } from '../cluster-state.js';
import { configFromEnv } from '../config.js';
import type { AddressAllocator, Allocation } from '../ipam/allocator.js';
import { operatorMetrics } from '../metrics.js';
import type { HostState } from '../scheduler/types.js';
import { InstanceReconciler, stateOf } from './reconciler.js';

type Call = [string, ...unknown[]];

const FINALIZERS = [OPERATOR_FINALIZER, NODE_CLEANUP_FINALIZER];

function host(name: string, memoryMiB = 4096): HostState {
  return {
    name,
    disabled: false,
    labels: {},
    capacity: { vcpus: 4, memoryMiB, diskGiB: 100 },
    reserved: { vcpus: 0, memoryMiB: 0, diskGiB: 0 },
    ratios: { cpu: 1, ram: 1, disk: 1 },
    used: { vcpus: 0, memoryMiB: 0, diskGiB: 0 },
    recentFailures: 0,
    groupMembers: new Map(),
    arch: 'x86_64',
  };
}

const READY_NETWORK = {
  type: 'Ready',
  status: 'True' as const,
  reason: 'Ready',
  message: 'VNI 1000',
  observedGeneration: 1,
  lastTransitionTime: '2026-11-24T10:00:00Z',
};

class Fakes {
  calls: Call[] = [];
  instances = new Map<string, InstanceObject>();
  flavors = new Map<string, IFlavor>([
    [
      'small',
      {
        spec: { vcpus: 1, memoryMiB: 1024, rootDiskGiB: 10 },
        metadata: { name: 'small' },
      } as IFlavor,
    ],
  ]);
  images = new Map<string, IImage>([
    [
      'guest',
      {
        spec: { source: '/g', sha256: 'a'.repeat(64), minDiskGiB: 1 },
        metadata: { name: 'guest' },
      } as IImage,
    ],
  ]);
  networks = new Map<string, INetwork>([
    [
      'net1',
      {
        spec: { cidr: '10.0.0.0/24', gateway: '10.0.0.1', bridge: 'br1' },
        metadata: { name: 'net1', generation: 1 },
        // Checked by the operator's Network controller: addresses may be handed out.
        status: { vni: 1000, conditions: [READY_NETWORK] },
      } as INetwork,
    ],
  ]);
  hosts = [host('hv-a')];
  claims = new Claims();
  down = new Map<string, number>();
  tombstones = new Map<string, string[]>();
  bound: string | null = null;
  allocation: Allocation = {
    interface: {
      network: 'net1',
      ip: '10.0.0.5',
      mac: 'fa:16:3e:00:00:05',
      gateway: '10.0.0.1',
      prefix: 24,
    },
  };
  statusError: unknown;
  readonly registry = new Registry();

  state = {
    instances: {
      get: (name: string, ns: string) => this.instances.get(`${ns}/${name}`),
      list: () => [...this.instances.values()],
    },
    flavors: { get: (n: string) => this.flavors.get(n) },
    images: { get: (n: string) => this.images.get(n) },
    networks: { get: (n: string) => this.networks.get(n) },
    serverGroups: { get: () => undefined },
    claims: this.claims,
    hostStates: () => this.hosts.map((h) => ({ ...h, used: this.claims.used(h.name) })),
    flavorResources: (f: IFlavor) => ({
      vcpus: f.spec.vcpus,
      memoryMiB: f.spec.memoryMiB,
      diskGiB: f.spec.rootDiskGiB,
    }),
    recordFailure: (node: string) => this.calls.push(['recordFailure', node]),
    downForMs: (node: string) => this.down.get(node) ?? 0,
    boundNode: async () => this.bound,
    takeTombstones: (key: string) => this.tombstones.get(key) ?? [],
  } as unknown as ClusterState;

  /** Addresses the allocator knows the Instance holds. */
  held: unknown[] = [];
  allocator = {
    allocationsOf: () => this.held,
    allocate: async () => (this.calls.push(['allocate']), this.allocation),
    release: async (uid: string) => void this.calls.push(['release', uid]),
    holdForNode: async (uid: string, node: string) =>
      void this.calls.push(['holdForNode', uid, node]),
  } as unknown as AddressAllocator;

  patcher = {
    setFinalizers: async (_ref: unknown, _rv: string, finalizers: string[]) => {
      this.calls.push(['setFinalizers', finalizers]);
      return this.only();
    },
    mergeStatus: async (_ref: unknown, _rv: string, status: Record<string, unknown>) => {
      this.calls.push(['status', status]);
      if (this.statusError) throw this.statusError;
      return this.only();
    },
  } as unknown as Patcher;

  events = {
    record: (_o: unknown, type: string, reason: string) => this.calls.push(['event', type, reason]),
  } as unknown as EventRecorder;

  config = { ...configFromEnv(), maxAttempts: 3, deleteWithNodeDownAfterMs: 300_000 };
  reconciler = new InstanceReconciler({
    state: this.state,
    allocator: this.allocator,
    patcher: this.patcher,
    events: this.events,
    config: this.config,
    metrics: operatorMetrics(this.registry, this.state),
    logger: logger('test'),
    observedActive: new Set(),
  });

  only(): InstanceObject {
    return [...this.instances.values()][0] as InstanceObject;
  }

  put(
    status: InstanceStatus | undefined,
    meta: Partial<InstanceObject['metadata']> = {},
  ): InstanceObject {
    const inst = {
      apiVersion: 'compute.kova.dev/v1alpha1',
      kind: 'Instance',
      metadata: {
        name: 'vm',
        namespace: 'ns',
        uid: 'uid-1',
        resourceVersion: '7',
        generation: 1,
        finalizers: FINALIZERS,
        ...meta,
      },
      spec: { flavor: 'small', image: 'guest', networks: [{ network: 'net1' }] },
      status,
    } as InstanceObject;
    this.instances.set('ns/vm', inst);
    return inst;
  }

  sync = () => this.reconciler.sync('ns/vm');
  named = (name: string) => this.calls.filter((c) => c[0] === name);
  status = () => this.named('status').map((c) => c[1] as Record<string, unknown>);
  eventReasons = () => this.named('event').map((c) => c[2]);
}

const condition = (s: Record<string, unknown>, type: string) =>
  (s.conditions as { type: string; status: string; reason: string }[] | undefined)?.find(
    (c) => c.type === type,
  );

/** What a bind of `small` and `guest` records (status.flavor, status.image). */
const RECORD = {
  flavor: {
    name: 'small',
    vcpus: 1,
    memoryMiB: 1024,
    rootDiskGiB: 10,
    ephemeralGiB: 0,
    swapMiB: 0,
  },
  image: { name: 'guest', sha256: 'a'.repeat(64), format: 'qcow2' },
};

let f: Fakes;
beforeEach(() => {
  f = new Fakes();
});

describe('the handler table', () => {
  it.each([
    [{ deletionTimestamp: new Date().toISOString() }, { phase: 'Active' as const }, 'Deleting'],
    [{}, undefined, 'Scheduling'],
    [{}, { phase: 'Error' as const }, 'Failed'],
    [
      {},
      {
        phase: 'Spawning' as const,
        nodeName: 'a',
        fault: { reason: 'X', message: 'x', node: 'a' },
      },
      'AgentFault',
    ],
    [{}, { phase: 'Networking' as const, nodeName: 'a', interfaces: [] }, 'Networking'],
    [{}, { phase: 'Active' as const, nodeName: 'a' }, 'OnNode'],
  ])('%j %j is handled as %s', (meta, status, state) => {
    expect(stateOf(f.put(status, meta as never))).toBe(state);
  });
});

describe('finalizers', () => {
  it('sets none: a bind is one status write (the agent sets node-cleanup at the hand-off)', async () => {
    f.put(undefined, { finalizers: [] });
    await f.sync();
    expect(f.named('setFinalizers')).toEqual([]);
    expect(f.status()).toHaveLength(1);
    expect(f.status()[0]).toMatchObject({ phase: 'Networking', nodeName: 'hv-a' });
  });
});

describe('Scheduling', () => {
  it('waits for a missing Flavor with a condition and one Event, and allocates nothing', async () => {
    f.flavors.clear();
    f.put(undefined);
    expect(await f.sync()).toEqual({ requeueAfterMs: 30_000 });
    expect(f.status()).toHaveLength(1);
    expect(condition(f.status()[0]!, 'Scheduled')).toMatchObject({
      status: 'False',
      reason: 'FlavorNotFound',
    });
    expect(f.eventReasons()).toEqual(['FlavorNotFound']);
    expect(f.named('allocate')).toEqual([]);
  });

  it('waits, claiming nothing, for a Network the operator has refused or not checked yet', async () => {
    const net = f.networks.get('net1') as INetwork;
    const refused = {
      ...READY_NETWORK,
      status: 'False' as const,
      reason: 'CIDROverlap',
      message: 'cidr 10.0.0.0/24 overlaps Network older (10.0.0.0/16)',
    };
    f.networks.set('net1', { ...net, status: { conditions: [refused] } });
    f.put(undefined);
    expect(await f.sync()).toEqual({ requeueAfterMs: 30_000 });
    expect(condition(f.status()[0]!, 'Scheduled')).toMatchObject({
      status: 'False',
      reason: 'NetworkNotReady',
      message:
        'Network net1 is not usable (CIDROverlap): cidr 10.0.0.0/24 overlaps Network older (10.0.0.0/16)',
    });
    expect(f.eventReasons()).toEqual(['NetworkNotReady']);
    expect(f.named('allocate')).toEqual([]);
    expect(f.claims.get('uid-1')).toBeUndefined();
  });

  it('writes nothing and records no Event when a wait has not changed', async () => {
    f.hosts = [];
    const inst = f.put(undefined);
    await f.sync();
    const written = f.status()[0]!;
    f.put({ ...(written as InstanceStatus), observedGeneration: inst.metadata.generation });
    f.calls = [];
    await f.sync();
    expect(f.status()).toEqual([]);
    expect(f.eventReasons()).toEqual([]);
  });

  it('binds: claims the host, allocates, writes Networking with the node and interfaces once', async () => {
    f.put(undefined);
    expect(await f.sync()).toBeUndefined();
    expect(f.status()).toHaveLength(1);
    const s = f.status()[0]!;
    expect(s).toMatchObject({ phase: 'Networking', nodeName: 'hv-a', observedGeneration: 1 });
    expect(s.interfaces).toEqual([(f.allocation as { interface: unknown }).interface]);
    expect(condition(s, 'Scheduled')).toMatchObject({ status: 'True', reason: 'Bound' });
    expect(f.claims.get('uid-1')?.node).toBe('hv-a');
    expect(f.eventReasons()).toEqual(['Scheduled']);
  });

  it('records the Flavor and Image it binds with in the same write as the node', async () => {
    f.put(undefined);
    await f.sync();
    expect(f.status()).toHaveLength(1);
    expect(f.status()[0]).toMatchObject({ nodeName: 'hv-a', ...RECORD });
  });

  it('with no valid host, releases addresses a lost bind left once the server says unbound', async () => {
    f.hosts = [host('hv-a', 512)];
    f.held = [{ spec: { ip: '10.0.0.9' } }];
    f.put(undefined);
    await f.sync();
    expect(f.named('release')).toEqual([['release', 'uid-1']]);
    expect(condition(f.status()[0]!, 'Scheduled')).toMatchObject({ reason: 'NoValidHost' });
    expect(f.claims.get('uid-1')).toBeUndefined();
  });

  it('with no valid host on a view behind another bind, frees nothing and writes nothing', async () => {
    f.hosts = [host('hv-a', 512)];
    f.held = [{ spec: { ip: '10.0.0.9' } }];
    f.bound = 'hv-b';
    f.put(undefined);
    expect(await f.sync()).toEqual({ requeueAfterMs: 200 });
    expect(f.calls).toEqual([]);
  });

  it('fails an Instance whose image needs a bigger disk than its flavor', async () => {
    f.images.get('guest')!.spec.minDiskGiB = 50;
    f.put(undefined);
    await f.sync();
    expect(f.status()[0]).toMatchObject({
      phase: 'Error',
      fault: { reason: 'FlavorDiskTooSmall' },
    });
    expect(f.named('allocate')).toEqual([]);
  });

  it('drops the claim when the bind was refused as stale (409)', async () => {
    f.statusError = Object.assign(new Error('conflict'), { code: 409 });
    f.put(undefined);
    await expect(f.sync()).rejects.toThrow('conflict');
    expect(f.claims.get('uid-1')).toBeUndefined();
  });

  it('keeps the claim when the reply was lost but the API server has the bind', async () => {
    f.statusError = new Error('socket hang up');
    f.bound = 'hv-a';
    f.put(undefined);
    await expect(f.sync()).rejects.toThrow('socket hang up');
    expect(f.claims.get('uid-1')).toMatchObject({ node: 'hv-a', pendingSince: undefined });
  });

  it('waits for the view to show its own bind instead of deciding again', async () => {
    f.put(undefined);
    f.claims.set(
      'uid-1',
      { node: 'hv-a', resources: { vcpus: 1, memoryMiB: 1, diskGiB: 1 } },
      Date.now(),
    );
    expect(await f.sync()).toEqual({ requeueAfterMs: 200 });
    expect(f.calls).toEqual([]);
  });
});

describe('Networking', () => {
  it('records a taken fixed IP once: one write, one Event, nothing while it stays so', async () => {
    f.allocation = { reason: 'FixedIPInUse', message: 'held by ns/other' };
    f.put({ phase: 'Networking', nodeName: 'hv-a', interfaces: [] });
    expect(await f.sync()).toEqual({ requeueAfterMs: 30_000 });
    expect(condition(f.status()[0]!, 'NetworkReady')).toMatchObject({ reason: 'FixedIPInUse' });
    expect(f.eventReasons()).toEqual(['FixedIPInUse']);
    f.put({ ...f.only().status, ...(f.status()[0] as InstanceStatus) });
    f.calls = [];
    await f.sync();
    expect(f.status()).toEqual([]);
    expect(f.eventReasons()).toEqual([]);
  });
});

describe('a fault reported by the agent', () => {
  const faulted = (retryable: boolean, attempts = 0): InstanceStatus => ({
    phase: 'Spawning',
    nodeName: 'hv-a',
    powerState: 'Shutdown',
    buildStartedAt: '2026-01-01T00:00:00Z',
    restartBackoff: { count: 2, lastRestartTime: '2026-01-01T00:00:00Z' },
    interfaces: [],
    attempts: Array.from({ length: attempts }, (_, i) => ({
      node: `hv-${i}`,
      reason: 'X',
      message: 'x',
    })),
    fault: { reason: 'DomainStartFailed', message: 'qemu died', node: 'hv-a', retryable },
    ...RECORD,
  });

  it('reschedules a retryable fault: releases the claim and addresses, clears the binding', async () => {
    f.claims.set('uid-1', { node: 'hv-a', resources: { vcpus: 1, memoryMiB: 1, diskGiB: 1 } });
    f.put(faulted(true));
    await f.sync();
    expect(f.named('release')).toEqual([['release', 'uid-1']]);
    expect(f.claims.get('uid-1')).toBeUndefined();
    const s = f.status()[0]!;
    expect(s).toMatchObject({
      phase: 'Scheduling',
      nodeName: null,
      interfaces: null,
      fault: null,
      powerState: null,
      // The next node's build must not inherit this attempt's clock or crash backoff.
      buildStartedAt: null,
      restartBackoff: null,
      // The next bind records what it gives afresh.
      flavor: null,
      image: null,
    });
    expect(s.attempts).toEqual([
      expect.objectContaining({ node: 'hv-a', reason: 'DomainStartFailed' }),
    ]);
    expect(f.eventReasons()).toEqual(['Rescheduling']);
  });

  it('fails a fault no other node could fix, keeping the fault', async () => {
    f.put(faulted(false));
    await f.sync();
    expect(f.status()[0]).toMatchObject({
      phase: 'Error',
      fault: { reason: 'DomainStartFailed', retryable: false },
    });
    expect(condition(f.status()[0]!, 'Ready')).toMatchObject({ status: 'False' });
  });

  it('with one attempt allowed, fails with the fault itself, not MaxRetriesExceeded', async () => {
    f.config.maxAttempts = 1;
    f.put(faulted(true));
    await f.sync();
    expect(f.status()[0]).toMatchObject({ phase: 'Error', fault: { reason: 'DomainStartFailed' } });
  });

  it('fails with MaxRetriesExceeded listing every attempt after the last one', async () => {
    f.put(faulted(true, 2));
    await f.sync();
    const s = f.status()[0]!;
    expect(s).toMatchObject({ phase: 'Error', fault: { reason: 'MaxRetriesExceeded' } });
    expect((s.fault as { message: string }).message).toContain('all 3 attempts failed');
  });
});

describe('Error', () => {
  it('clears what a failed Instance no longer holds, then leaves it alone', async () => {
    f.put({
      phase: 'Error',
      fault: { reason: 'ChecksumMismatch', message: 'bad', time: 't' },
      powerState: 'Running',
      launchedAt: 't',
    });
    await f.sync();
    const s = f.status()[0]!;
    expect(s).toMatchObject({ powerState: null, launchedAt: null });
    expect(condition(s, 'Ready')).toMatchObject({ status: 'False', reason: 'ChecksumMismatch' });
    f.put({ ...f.only().status, ...(s as InstanceStatus) });
    f.calls = [];
    await f.sync();
    expect(f.status()).toEqual([]);
  });
});

describe('Deleting', () => {
  const deleting = { deletionTimestamp: new Date().toISOString() };

  it('first sets phase Deleting with Ready False, and nothing else', async () => {
    f.put({ phase: 'Active', nodeName: 'hv-a' }, deleting);
    await f.sync();
    expect(f.status()[0]).toMatchObject({ phase: 'Deleting' });
    expect(condition(f.status()[0]!, 'Ready')).toMatchObject({
      status: 'False',
      reason: 'Deleting',
    });
    expect(f.named('setFinalizers')).toEqual([]);
  });

  it('waits for the agent of a live node to lift its finalizer', async () => {
    f.put({ phase: 'Deleting', nodeName: 'hv-a' }, deleting);
    const result = await f.sync();
    expect(result?.requeueAfterMs).toBeGreaterThan(0);
    expect(f.calls).toEqual([]);
  });

  it('on a node down too long, holds the addresses for that node and lifts the node finalizer', async () => {
    f.down.set('hv-a', 400_000);
    f.put({ phase: 'Deleting', nodeName: 'hv-a' }, deleting);
    await f.sync();
    expect(f.named('holdForNode')).toEqual([['holdForNode', 'uid-1', 'hv-a']]);
    expect(f.named('setFinalizers')).toEqual([['setFinalizers', [OPERATOR_FINALIZER]]]);
    expect(f.named('release')).toEqual([]);
    expect(f.eventReasons()).toEqual(['NodeDown']);
  });

  it('once the node is clean, releases claim and addresses, then lifts its own finalizer', async () => {
    f.claims.set('uid-1', { node: 'hv-a', resources: { vcpus: 1, memoryMiB: 1, diskGiB: 1 } });
    f.put(
      { phase: 'Deleting', nodeName: 'hv-a' },
      { ...deleting, finalizers: [OPERATOR_FINALIZER] },
    );
    await f.sync();
    expect(f.calls).toEqual([
      ['release', 'uid-1'],
      ['setFinalizers', []],
    ]);
    expect(f.claims.get('uid-1')).toBeUndefined();
  });

  it("with only the agent's node-cleanup finalizer, waits for that agent and then lets it go", async () => {
    const agentOnly = { ...deleting, finalizers: [NODE_CLEANUP_FINALIZER] };
    f.put({ phase: 'Deleting', nodeName: 'hv-a' }, agentOnly);
    expect((await f.sync())?.requeueAfterMs).toBeGreaterThan(0);
    expect(f.calls).toEqual([]);
    f.down.set('hv-a', 400_000);
    await f.sync();
    expect(f.named('holdForNode')).toEqual([['holdForNode', 'uid-1', 'hv-a']]);
    expect(f.named('setFinalizers')).toEqual([['setFinalizers', []]]);
  });

  it('leaves an Instance with no kova finalizer to the API server', async () => {
    f.put({ phase: 'Networking', nodeName: 'hv-a' }, { ...deleting, finalizers: [] });
    await f.sync();
    expect(f.calls).toEqual([]);
  });

  it('releases what a deleted Instance held when its delete event comes', async () => {
    f.tombstones.set('ns/vm', ['uid-gone']);
    f.claims.set('uid-gone', { node: 'hv-a', resources: { vcpus: 1, memoryMiB: 1, diskGiB: 1 } });
    await f.sync();
    expect(f.calls).toEqual([['release', 'uid-gone']]);
    expect(f.claims.get('uid-gone')).toBeUndefined();
  });
});

describe('the record of what a bound Instance was given', () => {
  const running: InstanceStatus = { phase: 'Active', nodeName: 'hv-a', interfaces: [] };

  it('fills the record of an Instance bound before records existed, once, from its Flavor and Image', async () => {
    f.put(running);
    await f.sync();
    expect(f.status()).toEqual([RECORD]);
    f.put({ ...running, ...(f.status()[0] as InstanceStatus) });
    f.calls = [];
    await f.sync();
    expect(f.status()).toEqual([]);
  });

  it('never rewrites a record from a Flavor recreated with other sizes', async () => {
    f.flavors.get('small')!.spec.memoryMiB = 4096;
    f.put({ ...running, ...RECORD });
    await f.sync();
    expect(f.status()).toEqual([]);
  });

  it('fills only what still exists when the Flavor is gone', async () => {
    f.flavors.clear();
    f.put(running);
    await f.sync();
    expect(f.status()).toEqual([{ image: RECORD.image }]);
  });

  it('drops the record with the binding when the Instance fails', async () => {
    const fault = { reason: 'ChecksumMismatch', message: 'bad', node: 'hv-a', retryable: false };
    f.put({ phase: 'Spawning', nodeName: 'hv-a', interfaces: [], fault, ...RECORD });
    await f.sync();
    expect(f.status()[0]).toMatchObject({ phase: 'Error', flavor: null, image: null });
  });
});

describe('on the node', () => {
  it('after a spec change the agent acts on, stamps Scheduled with the new generation only', async () => {
    const t = new Date().toISOString();
    const scheduled = { type: 'Scheduled', status: 'True' as const, reason: 'Bound', message: '' };
    f.put(
      {
        phase: 'Active',
        nodeName: 'hv-a',
        observedGeneration: 1,
        conditions: [{ ...scheduled, lastTransitionTime: t, observedGeneration: 1 }],
      },
      { generation: 2 },
    );
    await f.sync();
    expect(f.status()).toHaveLength(1);
    expect(condition(f.status()[0]!, 'Scheduled')).toMatchObject({ observedGeneration: 2 });
    // Whether the runStrategy change took effect is the agent's to say.
    expect(f.status()[0]!.observedGeneration).toBeUndefined();
  });

  it('sets node-cleanup on an Instance an agent of an earlier release builds without it', async () => {
    f.put({ phase: 'Spawning', nodeName: 'hv-a', interfaces: [], ...RECORD }, { finalizers: [] });
    await f.sync();
    expect(f.named('setFinalizers')).toEqual([['setFinalizers', [NODE_CLEANUP_FINALIZER]]]);
  });

  it('leaves the finalizer to the agent of this release while the Instance is only handed off', async () => {
    f.put(
      {
        phase: 'Networking',
        nodeName: 'hv-a',
        interfaces: [{ network: 'net1', ip: '10.0.0.5', mac: 'm', gateway: 'g', prefix: 24 }],
        ...RECORD,
      },
      { finalizers: [] },
    );
    await f.sync();
    expect(f.named('setFinalizers')).toEqual([]);
  });

  it('only measures, once per Instance: creation → Active, and no write', async () => {
    const t = new Date().toISOString();
    f.put(
      {
        phase: 'Active',
        nodeName: 'hv-a',
        interfaces: [{ network: 'net1', ip: '10.0.0.5', mac: 'm', gateway: 'g', prefix: 24 }],
        conditions: [
          { type: 'Ready', status: 'True', reason: 'Running', message: '', lastTransitionTime: t },
        ],
        ...RECORD,
      },
      { creationTimestamp: new Date(Date.now() - 1000).toISOString() },
    );
    await f.sync();
    await f.sync();
    expect(f.calls).toEqual([]);
    const metric = await f.registry
      .getSingleMetric('kova_instance_create_to_active_seconds')
      ?.get();
    const count = metric?.values.find((v) =>
      (v as { metricName?: string }).metricName?.endsWith('_count'),
    )?.value;
    expect(count).toBe(1);
  });
});
