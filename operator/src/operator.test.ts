// The operator against its own real API server and simulated hypervisors (Hypervisor objects
// with Nodes and heartbeat Leases, no agents). The test plays the agent where one is needed.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import {
  AdmissionregistrationV1Api,
  ApiextensionsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
} from '@kubernetes/client-node';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import https from 'node:https';
import { apiStatus, Patcher } from '@kova/controller-kit';
import {
  API_VERSION,
  GROUP,
  NODE_CLEANUP_FINALIZER,
  PLURAL,
  VERSION,
  type IIPBlock,
  type InstanceStatus,
} from '@kova/crds';
import {
  kubectlPath,
  LocalControlPlane,
  SimulatedFleet,
  type SimulatedHost,
  until,
} from '@kova/hack';
import type { InstanceObject as Instance } from '@kova/crds';
import { ClusterState } from './cluster-state.js';
import { configFromEnv, type OperatorConfig } from './config.js';
import { AddressAllocator } from './ipam/allocator.js';
import { leasesOf, type AddressLease } from './ipam/blocks.js';
import type { ReconcilerDeps } from './instance/sync-context.js';
import {
  runOperator,
  startFleetCluster,
  stopFleetCluster,
  stopOperator,
  type RunningOperator,
} from './test-support.js';

const execFileAsync = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let cp: LocalControlPlane;
let kc: KubeConfig;
let api: CustomObjectsApi;
let fleet: SimulatedFleet;
let operator: RunningOperator;

function startOperator(
  over: Partial<OperatorConfig> = {},
  overrides: Partial<Pick<ReconcilerDeps, 'patcher'>> = {},
): Promise<RunningOperator> {
  const config = {
    ...configFromEnv(),
    heartbeatTimeoutMs: 3000,
    deleteWithNodeDownAfterMs: 1000,
    heldAddressCheckMs: 500,
    ...over,
  };
  return runOperator(kc, config, 'operator-test', overrides);
}

const kovaApi = (plural: string) => ({ group: GROUP, version: VERSION, plural });

async function create(kind: string, body: object, namespace?: string): Promise<unknown> {
  const full = { apiVersion: API_VERSION, kind, ...body };
  const plural = PLURAL[kind as keyof typeof PLURAL];
  return namespace
    ? api.createNamespacedCustomObject({ ...kovaApi(plural), namespace, body: full })
    : api.createClusterCustomObject({ ...kovaApi(plural), body: full });
}

async function listInstances(namespace: string): Promise<Instance[]> {
  return (
    (await api.listNamespacedCustomObject({ ...kovaApi('instances'), namespace })) as {
      items: Instance[];
    }
  ).items;
}

async function getInstance(namespace: string, name: string): Promise<Instance | undefined> {
  return (await api
    .getNamespacedCustomObject({ ...kovaApi('instances'), namespace, name })
    .catch(() => undefined)) as Instance | undefined;
}

/** Every address held, as the IPBlocks list them. */
async function allocations(): Promise<AddressLease[]> {
  const list = (await api.listClusterCustomObject(kovaApi('ipblocks'))) as { items: IIPBlock[] };
  return list.items.flatMap(leasesOf);
}

const cond = (s: InstanceStatus | undefined, type: string) =>
  s?.conditions?.find((c) => c.type === type);

async function namespace(name: string): Promise<string> {
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name } } });
  return name;
}

function instance(name: string, spec: Record<string, unknown> = {}, pool = 'spare') {
  return {
    metadata: { name },
    spec: {
      flavor: 'small',
      image: 'guest',
      networks: [{ network: 'net1' }],
      nodeSelector: { pool },
      ...spec,
    },
  };
}

/** Acts as the node agent reporting a build fault on the node the Instance is bound to. */
async function reportFault(
  ns: string,
  name: string,
  reason: string,
  retryable: boolean,
): Promise<void> {
  const inst = (await getInstance(ns, name)) as Instance;
  await new Patcher(kc, 'fake-agent').mergeStatus(
    { apiVersion: API_VERSION, kind: 'Instance', plural: 'instances', name, namespace: ns },
    inst.metadata.resourceVersion as string,
    {
      phase: 'Spawning',
      powerState: 'Shutdown',
      launchedAt: new Date().toISOString(),
      conditions: [
        ...(inst.status?.conditions ?? []).filter((c) => c.type !== 'NetworkReady'),
        {
          type: 'NetworkReady',
          status: 'True',
          reason: 'Plugged',
          message: 'plugged (fake agent)',
          lastTransitionTime: new Date().toISOString(),
        },
      ],
      fault: {
        reason,
        message: `${reason} (injected)`,
        node: inst.status?.nodeName,
        retryable,
        time: new Date().toISOString(),
      },
    },
  );
}

/** Plays the node agent: sets or lifts its node-cleanup finalizer, retrying on conflict. */
async function setCleanupFinalizer(ns: string, name: string, on: boolean): Promise<void> {
  for (;;) {
    const fresh = await getInstance(ns, name);
    if (!fresh) return; // gone: nothing was built on a node, or its cleanup is done
    const others = (fresh.metadata.finalizers ?? []).filter((f) => f !== NODE_CLEANUP_FINALIZER);
    try {
      await new Patcher(kc, 'fake-agent').setFinalizers(
        { apiVersion: API_VERSION, kind: 'Instance', plural: 'instances', name, namespace: ns },
        fresh.metadata.resourceVersion as string,
        on ? [...others, NODE_CLEANUP_FINALIZER] : others,
      );
      return;
    } catch (err) {
      if (apiStatus(err) !== 409) throw err;
    }
  }
}

/** The agent's hand-off: it sets its finalizer before it builds anything on the node. */
const handOff = (ns: string, name: string) => setCleanupFinalizer(ns, name, true);
/** The agent after it removed the domain. */
const removeCleanupFinalizer = (ns: string, name: string) => setCleanupFinalizer(ns, name, false);

beforeAll(async () => {
  // 40 hypervisors of mixed sizes; `small` (1 vCPU, 1 GiB, 10 GiB) fits 15 on a small one and 31 on a big one.
  // The burst gets 40 of its own (pool=burst); the other tests use 4 spares (pool=spare).
  const hosts: SimulatedHost[] = Array.from({ length: 44 }, (_, i) => ({
    name: `hv-${String(i).padStart(2, '0')}`,
    vcpus: i % 2 ? 16 : 4,
    memoryMiB: i % 2 ? 32 * 1024 : 16 * 1024,
    diskGiB: i % 2 ? 400 : 200,
    zone: i % 4 < 2 ? 'az1' : 'az2',
    labels: { pool: i < 40 ? 'burst' : 'spare' },
  }));
  ({ cp, kc, api, fleet } = await startFleetCluster(hosts, 1000));
  await create('Flavor', {
    metadata: { name: 'small' },
    spec: { vcpus: 1, memoryMiB: 1024, rootDiskGiB: 10 },
  });
  await create('Flavor', {
    metadata: { name: 'huge' },
    spec: { vcpus: 1, memoryMiB: 64 * 1024, rootDiskGiB: 10 },
  });
  await create('Image', {
    metadata: { name: 'guest' },
    spec: { source: '/var/lib/kova/guest.qcow2', sha256: 'a'.repeat(64), minDiskGiB: 1 },
  });
  await create('Image', {
    metadata: { name: 'big-image' },
    spec: { source: '/var/lib/kova/big.qcow2', sha256: 'b'.repeat(64), minDiskGiB: 50 },
  });
  await create('Network', {
    metadata: { name: 'net1' },
    spec: { cidr: '10.100.0.0/20', gateway: '10.100.0.1', bridge: 'br-net1' },
  });
  await create('Network', {
    metadata: { name: 'tiny' },
    spec: {
      cidr: '10.200.0.0/29',
      gateway: '10.200.0.1',
      bridge: 'br-tiny',
      allocationPools: [{ start: '10.200.0.2', end: '10.200.0.3' }],
    },
  });
  operator = await startOperator();
}, 120_000);

afterAll(async () => {
  await stopOperator(operator);
  await stopFleetCluster({ cp, fleet });
});

describe('a burst of 1,000 Instances onto 40 hypervisors that fit only some', () => {
  const total = 1000;
  let ns: string;
  let settled: Instance[];
  let blockWrites: number;

  beforeAll(async () => {
    ns = await namespace('burst');
    const writes = async () =>
      (await apiServerCount('resource="ipblocks"', 'verb="PUT"')) +
      (await apiServerCount('resource="ipblocks"', 'verb="POST"'));
    const writesBefore = await writes();
    await create(
      'ServerGroup',
      { metadata: { name: 'spread' }, spec: { policy: 'anti-affinity', maxPerNode: 1 } },
      ns,
    );
    const names = Array.from({ length: total }, (_, i) => `vm-${String(i).padStart(4, '0')}`);
    for (let i = 0; i < names.length; i += 50) {
      await Promise.all(
        names
          .slice(i, i + 50)
          .map((n, j) =>
            create(
              'Instance',
              instance(n, i + j < 60 ? { serverGroup: 'spread' } : {}, 'burst'),
              ns,
            ),
          ),
      );
    }
    settled = await until(
      'every Instance to be bound or to wait with NoValidHost',
      async () => {
        const items = await listInstances(ns);
        const done = items.filter(
          (i) =>
            (i.status?.phase === 'Networking' && i.status.interfaces?.length === 1) ||
            cond(i.status, 'Scheduled')?.reason === 'NoValidHost',
        );
        return done.length === total ? items : undefined;
      },
      240_000,
    );
    blockWrites = (await writes()) - writesBefore;
  }, 300_000);

  it("binds exactly as many as fit, and never beyond any hypervisor's allocation ratio", async () => {
    const perNode = new Map<string, number>();
    for (const i of settled)
      if (i.status?.nodeName)
        perNode.set(i.status.nodeName, (perNode.get(i.status.nodeName) ?? 0) + 1);
    const hvs = (
      (await api.listClusterCustomObject({ ...kovaApi('hypervisors') })) as {
        items: {
          metadata: { name: string };
          status: { capacity: { vcpus: number; memoryMiB: number } };
        }[];
      }
    ).items.filter((hv) => Number(hv.metadata.name.slice(3)) < 40);
    let fits = 0;
    for (const hv of hvs) {
      // memory is the binding limit: (capacity × 1.0 − 512 reserved) / 1024 per Instance; vCPU × 4.0 allows more.
      const byMemory = Math.floor((hv.status.capacity.memoryMiB - 512) / 1024);
      const byCpu = hv.status.capacity.vcpus * 4;
      const limit = Math.min(byMemory, byCpu);
      expect(perNode.get(hv.metadata.name) ?? 0).toBeLessThanOrEqual(limit);
      fits += limit;
    }
    const bound = settled.filter((i) => i.status?.nodeName).length;
    expect(bound).toBe(Math.min(total, fits));
    expect(bound).toBeLessThan(total);
  });

  it('leaves the rest waiting with NoValidHost and a message that counts the hypervisors each filter removed', () => {
    const waiting = settled.filter((i) => !i.status?.nodeName);
    expect(waiting.length).toBeGreaterThan(0);
    for (const i of waiting) {
      expect(i.status?.phase).toBe('Scheduling');
      const c = cond(i.status, 'Scheduled');
      expect(c?.status).toBe('False');
      expect(c?.message).toMatch(/^0\/44 hypervisors: (\d+ [a-zA-Z -]+(, )?)+$/);
      expect(c?.message).toContain('4 node selector mismatch');
      const counted = [...(c?.message.split(': ')[1]?.matchAll(/(\d+) [a-zA-Z -]+/g) ?? [])].reduce(
        (n, m) => n + Number(m[1]),
        0,
      );
      expect(counted).toBe(44);
    }
  });

  it('respects server-group anti-affinity', () => {
    const members = settled
      .filter((i) => i.spec.serverGroup === 'spread' && i.status?.nodeName)
      .map((i) => i.status?.nodeName);
    expect(new Set(members).size).toBe(members.length);
  });

  it('hands out every IP and MAC once, each recorded once in an IPBlock', async () => {
    const ifaces = settled.flatMap((i) => i.status?.interfaces ?? []);
    expect(new Set(ifaces.map((f) => f.ip)).size).toBe(ifaces.length);
    expect(new Set(ifaces.map((f) => f.mac)).size).toBe(ifaces.length);
    for (const f of ifaces) expect(f.mac).toMatch(/^fa:16:3e(:[0-9a-f]{2}){3}$/);
    const held = (await allocations()).filter((a) => a.instance.namespace === ns);
    expect(held.length).toBe(ifaces.length);
    // Addresses handed out meanwhile share a block's write: far fewer writes than addresses.
    expect(blockWrites).toBeLessThan(ifaces.length / 2);
  });

  it('binds the waiting ones once capacity is freed', async () => {
    const bound = settled.filter((i) => i.status?.nodeName).slice(0, 5);
    const core = kc.makeApiClient(CustomObjectsApi);
    for (const i of bound) {
      await core.deleteNamespacedCustomObject({
        ...kovaApi('instances'),
        namespace: ns,
        name: i.metadata.name,
      });
      // Play the agent: the domain is gone from the node.
      await removeCleanupFinalizer(ns, i.metadata.name);
    }
    await until('five waiting Instances to be bound in their place', async () => {
      const items = await listInstances(ns);
      return (
        items.filter((i) => i.status?.nodeName).length ===
        settled.filter((i) => i.status?.nodeName).length
      );
    });
    for (const i of bound)
      await until(
        `${i.metadata.name} to be gone`,
        async () => !(await getInstance(ns, i.metadata.name)),
      );
  });
});

describe('faults reported by the agent', () => {
  let ns: string;
  beforeAll(async () => {
    ns = await namespace('faults');
  });

  it('reschedules a retryable fault to another node, and after 3 attempts fails with MaxRetriesExceeded', async () => {
    await create('Instance', instance('flaky'), ns);
    const nodes: string[] = [];
    for (let attempt = 1; attempt <= 3; attempt++) {
      const bound = await until(`attempt ${attempt} to be bound`, async () => {
        const i = await getInstance(ns, 'flaky');
        return i?.status?.phase === 'Networking' && i.status.interfaces?.length ? i : undefined;
      });
      nodes.push(bound.status?.nodeName as string);
      await reportFault(ns, 'flaky', 'DomainStartFailed', true);
    }
    const failed = await until('phase Error', async () => {
      const i = await getInstance(ns, 'flaky');
      return i?.status?.phase === 'Error' ? i : undefined;
    });
    expect(new Set(nodes).size).toBe(3);
    expect(failed.status?.attempts?.map((a) => a.node)).toEqual(nodes);
    expect(failed.status?.fault?.reason).toBe('MaxRetriesExceeded');
    for (const n of nodes) expect(failed.status?.fault?.message).toContain(n);
    expect(failed.status?.nodeName).toBeUndefined();
    expect((await allocations()).filter((a) => a.instance.name === 'flaky')).toEqual([]);
  });

  it('fails at once on a fault no other node could fix', async () => {
    await create('Instance', instance('bad-checksum'), ns);
    await until(
      'bound',
      async () => (await getInstance(ns, 'bad-checksum'))?.status?.interfaces?.length,
    );
    await reportFault(ns, 'bad-checksum', 'ChecksumMismatch', false);
    const failed = await until('phase Error', async () => {
      const i = await getInstance(ns, 'bad-checksum');
      return i?.status?.phase === 'Error' ? i : undefined;
    });
    expect(failed.status?.fault?.reason).toBe('ChecksumMismatch');
    expect(failed.status?.attempts).toHaveLength(1);
  });

  it('#12.12 leaves no condition or field of a failed Instance saying what no longer holds', async () => {
    await create('Instance', instance('stale-failed'), ns);
    await until(
      'bound',
      async () => (await getInstance(ns, 'stale-failed'))?.status?.interfaces?.length,
    );
    await reportFault(ns, 'stale-failed', 'ChecksumMismatch', false);
    const failed = await until('phase Error', async () => {
      const i = await getInstance(ns, 'stale-failed');
      return i?.status?.phase === 'Error' ? i : undefined;
    });
    for (const type of ['Scheduled', 'NetworkReady', 'Ready'])
      expect([type, cond(failed.status, type)?.status]).toEqual([type, 'False']);
    expect(cond(failed.status, 'Scheduled')?.reason).toBe('ChecksumMismatch');
    expect(cond(failed.status, 'NetworkReady')?.reason).toBe('AddressesReleased');
    expect(failed.status?.powerState).toBeUndefined();
    expect(failed.status?.launchedAt).toBeUndefined();
    expect(failed.status?.interfaces).toBeUndefined();
  });

  it('fails at once when the image needs a bigger disk than the flavor has, and says so in Scheduled', async () => {
    const spec = { image: 'big-image', serverGroup: 'not-yet' };
    await create('Instance', instance('too-small', spec), ns);
    await until(
      'ServerGroupNotFound',
      async () =>
        cond((await getInstance(ns, 'too-small'))?.status, 'Scheduled')?.reason ===
        'ServerGroupNotFound',
    );
    await create(
      'ServerGroup',
      { metadata: { name: 'not-yet' }, spec: { policy: 'affinity' } },
      ns,
    );
    const failed = await until('phase Error', async () => {
      const i = await getInstance(ns, 'too-small');
      return i?.status?.phase === 'Error' ? i : undefined;
    });
    expect(failed.status?.fault?.reason).toBe('FlavorDiskTooSmall');
    expect(failed.status?.fault?.message).toContain('needs a root disk of 50 GiB');
    // The condition no longer says what it waited for before (#11: stale conditions).
    expect(cond(failed.status, 'Scheduled')?.reason).toBe('FlavorDiskTooSmall');
  });
});

describe('waiting for what is missing, and recovering by itself', () => {
  let ns: string;
  beforeAll(async () => {
    ns = await namespace('waiting');
  });

  const later: [
    kind: string,
    spec: Record<string, unknown>,
    reason: string,
    message: string,
    appear: (ns: string) => Promise<unknown>,
  ][] = [
    [
      'Flavor',
      { flavor: 'later' },
      'FlavorNotFound',
      'Flavor later does not exist; create it or fix spec.flavor',
      () =>
        create('Flavor', {
          metadata: { name: 'later' },
          spec: { vcpus: 1, memoryMiB: 512, rootDiskGiB: 1 },
        }),
    ],
    [
      'Image',
      { image: 'later-image' },
      'ImageNotFound',
      'Image later-image does not exist; create it or fix spec.image',
      () =>
        create('Image', {
          metadata: { name: 'later-image' },
          spec: { source: '/var/lib/kova/later.qcow2', sha256: 'c'.repeat(64) },
        }),
    ],
    [
      'Network',
      { networks: [{ network: 'later-net' }] },
      'NetworkNotFound',
      'Network later-net does not exist; create it or fix spec.networks',
      () =>
        create('Network', {
          metadata: { name: 'later-net' },
          spec: { cidr: '10.150.0.0/24', gateway: '10.150.0.1', bridge: 'br-later' },
        }),
    ],
    [
      'ServerGroup',
      { serverGroup: 'later-group' },
      'ServerGroupNotFound',
      'ServerGroup later-group does not exist; create it in namespace',
      (ns) =>
        create(
          'ServerGroup',
          { metadata: { name: 'later-group' }, spec: { policy: 'anti-affinity' } },
          ns,
        ),
    ],
  ];

  it.each(later)(
    'waits for a %s that does not exist yet, says so in a condition and an Event, then schedules',
    async (kind, spec, reason, message, appear) => {
      const name = `early-${kind.toLowerCase()}`;
      await create('Instance', instance(name, spec), ns);
      const waiting = await until(reason, async () => {
        const i = await getInstance(ns, name);
        return cond(i?.status, 'Scheduled')?.reason === reason ? i : undefined;
      });
      expect(waiting.status?.phase).toBe('Scheduling');
      expect(cond(waiting.status, 'Scheduled')?.message).toContain(message);
      const events = await until(`a ${reason} Event`, async () => {
        const list = await kc
          .makeApiClient(CoreV1Api)
          .listNamespacedEvent({ namespace: ns, fieldSelector: `involvedObject.name=${name}` });
        return list.items.find((e) => e.reason === reason);
      });
      expect(events.type).toBe('Warning');
      await appear(ns);
      await until(
        `bound after the ${kind} appears`,
        async () => (await getInstance(ns, name))?.status?.nodeName,
      );
    },
  );

  it('refuses a fixed IP that is taken or outside the network, and takes it once freed', async () => {
    await create(
      'Instance',
      instance('holder', { networks: [{ network: 'tiny', fixedIP: '10.200.0.3' }] }),
      ns,
    );
    await until(
      'holder bound',
      async () => (await getInstance(ns, 'holder'))?.status?.interfaces?.length,
    );
    await create(
      'Instance',
      instance('wants-same', { networks: [{ network: 'tiny', fixedIP: '10.200.0.3' }] }),
      ns,
    );
    await create(
      'Instance',
      instance('wants-outside', { networks: [{ network: 'tiny', fixedIP: '10.201.0.3' }] }),
      ns,
    );
    const inUse = await until('FixedIPInUse', async () => {
      const i = await getInstance(ns, 'wants-same');
      return cond(i?.status, 'NetworkReady')?.reason === 'FixedIPInUse' ? i : undefined;
    });
    expect(cond(inUse.status, 'NetworkReady')?.message).toContain(`held by Instance ${ns}/holder`);
    const outside = await until('FixedIPOutsideNetwork', async () => {
      const i = await getInstance(ns, 'wants-outside');
      return cond(i?.status, 'NetworkReady')?.reason === 'FixedIPOutsideNetwork' ? i : undefined;
    });
    expect(cond(outside.status, 'NetworkReady')?.message).toContain('10.201.0.3');

    await api.deleteNamespacedCustomObject({
      ...kovaApi('instances'),
      namespace: ns,
      name: 'holder',
    });
    await removeCleanupFinalizer(ns, 'holder');
    const got = await until('the freed address', async () => {
      const i = await getInstance(ns, 'wants-same');
      return i?.status?.interfaces?.[0]?.ip === '10.200.0.3' ? i : undefined;
    });
    expect(got.status?.interfaces?.[0]?.mac).toBe('fa:16:3e:c8:00:03');
  });

  it('reports an exhausted network', async () => {
    await create('Instance', instance('one-more', { networks: [{ network: 'tiny' }] }), ns);
    await create('Instance', instance('too-many', { networks: [{ network: 'tiny' }] }), ns);
    const exhausted = await until('NetworkExhausted', async () => {
      const items = await listInstances(ns);
      return items.find((i) => cond(i.status, 'NetworkReady')?.reason === 'NetworkExhausted');
    });
    expect(cond(exhausted.status, 'NetworkReady')?.message).toContain(
      'Network tiny has no free address',
    );
  });
});

describe('deletion', () => {
  let ns: string;
  beforeAll(async () => {
    ns = await namespace('deletion');
  });

  it('waits for the agent to clean the node, then releases the addresses and lets the Instance go', async () => {
    await create('Instance', instance('doomed'), ns);
    const bound = await until('bound', async () => {
      const i = await getInstance(ns, 'doomed');
      return i?.status?.interfaces?.length ? i : undefined;
    });
    await handOff(ns, 'doomed');
    await api.deleteNamespacedCustomObject({
      ...kovaApi('instances'),
      namespace: ns,
      name: 'doomed',
    });
    const deleting = await until('phase Deleting', async () => {
      const i = await getInstance(ns, 'doomed');
      return i?.status?.phase === 'Deleting' ? i : undefined;
    });
    // #12.12: a Deleting Instance is not Ready.
    expect(cond(deleting.status, 'Ready')).toMatchObject({ status: 'False', reason: 'Deleting' });
    await sleep(500);
    expect(await getInstance(ns, 'doomed')).toBeDefined();
    expect((await allocations()).some((a) => a.instance.uid === bound.metadata.uid)).toBe(true);
    await removeCleanupFinalizer(ns, 'doomed');
    await until('the Instance to be gone', async () => !(await getInstance(ns, 'doomed')));
    expect((await allocations()).some((a) => a.instance.uid === bound.metadata.uid)).toBe(false);
  });

  it('deletes at once an Instance no agent has taken over yet, and releases its addresses', async () => {
    await create('Instance', instance('early'), ns);
    const bound = await until('bound', async () => {
      const i = await getInstance(ns, 'early');
      return i?.status?.interfaces?.length ? i : undefined;
    });
    expect(bound.metadata.finalizers ?? []).toEqual([]);
    await api.deleteNamespacedCustomObject({
      ...kovaApi('instances'),
      namespace: ns,
      name: 'early',
    });
    expect(await getInstance(ns, 'early')).toBeUndefined();
    await until(
      'its address to be released',
      async () => !(await allocations()).some((a) => a.instance.uid === bound.metadata.uid),
    );
  });

  it('completes a deletion without the agent once its hypervisor has been down long enough', async () => {
    await create('Instance', instance('orphan', { availabilityZone: 'az1' }), ns);
    const bound = await until('bound', async () => {
      const i = await getInstance(ns, 'orphan');
      return i?.status?.interfaces?.length ? i : undefined;
    });
    await handOff(ns, 'orphan');
    fleet.stopHeartbeat(bound.status?.nodeName as string);
    await api.deleteNamespacedCustomObject({
      ...kovaApi('instances'),
      namespace: ns,
      name: 'orphan',
    });
    await until('the Instance to be gone', async () => !(await getInstance(ns, 'orphan')), 30_000);
    // #12.11: its VM may still run on the unreachable node, so its address is not handed out.
    const held = (await allocations()).filter((a) => a.instance.uid === bound.metadata.uid);
    const node = bound.status?.nodeName as string;
    expect(held.map((a) => a.heldForNode)).toEqual([node]);
    const ip = bound.status?.interfaces?.[0]?.ip as string;
    await create(
      'Instance',
      instance('wants-held', { networks: [{ network: 'net1', fixedIP: ip }] }),
      ns,
    );
    await until('FixedIPInUse for the held address', async () => {
      const i = await getInstance(ns, 'wants-held');
      return cond(i?.status, 'NetworkReady')?.reason === 'FixedIPInUse';
    });
    await sleep(3000);
    expect((await allocations()).some((a) => a.instance.uid === bound.metadata.uid)).toBe(true);
    // Back: still held until its agent reports the domain gone, then handed to the waiting one.
    fleet.resumeHeartbeat(node);
    await fleet.reportDomains(node, [bound.metadata.uid]);
    await sleep(2000);
    expect((await allocations()).some((a) => a.instance.uid === bound.metadata.uid)).toBe(true);
    await fleet.reportDomains(node, []);
    const got = await until(
      'the held address to go to wants-held',
      async () => {
        const i = await getInstance(ns, 'wants-held');
        return i?.status?.interfaces?.[0]?.ip === ip ? i : undefined;
      },
      30_000,
    );
    expect(got.status?.interfaces?.[0]?.mac).toBe(bound.status?.interfaces?.[0]?.mac);
  });
});

describe('hardening: the control loop against real failures', () => {
  let ns: string;
  beforeAll(async () => {
    ns = await namespace('hardening');
    await fleet.create([
      { name: 'hv-tight', vcpus: 1, memoryMiB: 1536, diskGiB: 10, labels: { pool: 'tight' } },
      { name: 'hv-skewed', vcpus: 4, memoryMiB: 8192, diskGiB: 100, labels: { pool: 'skewed' } },
    ]);
  });

  const bound = (name: string) =>
    until(`${name} bound`, async () => {
      const i = await getInstance(ns, name);
      return i?.status?.nodeName && i.status.interfaces?.length ? i : undefined;
    });

  it('#12.4 judges a heartbeat by when the operator saw it, not by the node clock', async () => {
    fleet.setClockSkew('hv-skewed', -40_000);
    await sleep(4000); // longer than the 3 s heartbeat timeout, with renewals 40 s "old"
    await create('Instance', instance('on-skewed', {}, 'skewed'), ns);
    expect((await bound('on-skewed')).status?.nodeName).toBe('hv-skewed');
    fleet.setClockSkew('hv-skewed', 3_600_000);
    fleet.stopHeartbeat('hv-skewed');
    await sleep(4000); // its last renewTime lies an hour ahead, yet no renewal came for 4 s
    await create('Instance', instance('after-skewed-died', {}, 'skewed'), ns);
    const waiting = await until('NoValidHost', async () => {
      const i = await getInstance(ns, 'after-skewed-died');
      return cond(i?.status, 'Scheduled')?.reason === 'NoValidHost' ? i : undefined;
    });
    expect(cond(waiting.status, 'Scheduled')?.message).toContain('1 hypervisor down');
  });

  it('#12.3 keeps the claim of a bind whose reply was lost after the API server applied it', async () => {
    await stopOperator(operator);
    let lose = true;
    const real = new Patcher(kc, 'kova-operator');
    const lossy = Object.assign(Object.create(real) as Patcher, {
      async mergeStatus(ref: { name: string }, rv: string, status: Record<string, unknown>) {
        const result = await real.mergeStatus(ref as never, rv, status);
        if (ref.name === 'lost-reply' && status.nodeName && lose) {
          lose = false;
          throw Object.assign(new Error('socket hang up (injected after the write)'), {
            code: 'ECONNRESET',
          });
        }
        return result;
      },
    });
    operator = await startOperator({}, { patcher: lossy });
    await create('Instance', instance('lost-reply', {}, 'tight'), ns);
    expect((await bound('lost-reply')).status?.nodeName).toBe('hv-tight');
    expect(lose).toBe(false);
    await create('Instance', instance('no-room-left', {}, 'tight'), ns);
    const waiting = await until('NoValidHost for the second', async () => {
      const i = await getInstance(ns, 'no-room-left');
      return cond(i?.status, 'Scheduled')?.reason === 'NoValidHost' ? i : undefined;
    });
    expect(waiting.status?.nodeName).toBeUndefined();
    expect(cond(waiting.status, 'Scheduled')?.message).toContain('insufficient');
    await stopOperator(operator);
    operator = await startOperator();
  });

  it("#12.3 releases both addresses of two replicas' concurrent allocations for one Instance", async () => {
    await create('Instance', instance('raced', {}, 'nowhere'), ns);
    const inst = await until('NoValidHost', async () => {
      const i = await getInstance(ns, 'raced');
      return cond(i?.status, 'Scheduled')?.reason === 'NoValidHost' ? i : undefined;
    });
    // Two replicas that both believe they lead, each with its own view.
    const replicas = [new ClusterState(kc, configFromEnv()), new ClusterState(kc, configFromEnv())];
    await Promise.all(replicas.map((r) => r.start()));
    const allocators = replicas.map((r) => new AddressAllocator(kc, r.networks, r.blocks));
    const got = await Promise.all(allocators.map((a) => a.allocate(inst, { network: 'net1' })));
    await Promise.all(replicas.map((r) => r.stop()));
    const mine = async () =>
      (await allocations()).filter((a) => a.instance.uid === inst.metadata.uid);
    // Each replica's answer is in a block for this Instance (one address, or two after a race).
    const ips = got.map((a) => ('interface' in a ? a.interface.ip : a.reason));
    expect((await mine()).map((l) => l.ip).sort()).toEqual([...new Set(ips)].sort());
    // The operator's next sync of the waiting Instance releases what a bind left behind: both.
    await api.patchNamespacedCustomObject(
      {
        ...kovaApi('instances'),
        namespace: ns,
        name: 'raced',
        body: { metadata: { labels: { poke: '1' } } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    await until(
      'no address left for the unbound Instance',
      async () => (await mine()).length === 0,
    );
  });

  it('#12.5 a waiting Instance does not flood the API with retries, writes or Events', async () => {
    await create('Network', {
      metadata: { name: 'flood' },
      spec: { cidr: '10.210.0.0/29', gateway: '10.210.0.1', bridge: 'br-flood' },
    });
    await create(
      'Instance',
      instance('flood-holder', { networks: [{ network: 'flood', fixedIP: '10.210.0.5' }] }),
      ns,
    );
    await bound('flood-holder');
    await create(
      'Instance',
      instance('flood-waiter', { networks: [{ network: 'flood', fixedIP: '10.210.0.5' }] }),
      ns,
    );
    const waiting = await until('FixedIPInUse', async () => {
      const i = await getInstance(ns, 'flood-waiter');
      return cond(i?.status, 'NetworkReady')?.reason === 'FixedIPInUse' ? i : undefined;
    });
    const blockRequests = () => apiServerCount('resource="ipblocks"', 'verb="PUT"');
    const requestsBefore = await blockRequests();
    await sleep(6000); // six rounds of heartbeats from 46 hypervisors
    const after = (await getInstance(ns, 'flood-waiter')) as Instance;
    expect(after.metadata.resourceVersion).toBe(waiting.metadata.resourceVersion);
    // The taken address is refused from the block as known: no write is tried.
    expect((await blockRequests()) - requestsBefore).toBe(0);
    const events = await kc.makeApiClient(CoreV1Api).listNamespacedEvent({
      namespace: ns,
      fieldSelector: `involvedObject.name=flood-waiter,reason=FixedIPInUse`,
    });
    expect(events.items.reduce((n, e) => n + (e.count ?? 1), 0)).toBe(1);
  });

  it('#12.6 keeps the Scheduled condition while the addresses are still being allocated', async () => {
    await create('Network', {
      metadata: { name: 'one-left' },
      spec: {
        cidr: '10.220.0.0/29',
        gateway: '10.220.0.1',
        bridge: 'br-one-left',
        allocationPools: [{ start: '10.220.0.2', end: '10.220.0.2' }],
      },
    });
    await create('Instance', instance('takes-last', { networks: [{ network: 'one-left' }] }), ns);
    await bound('takes-last');
    await handOff(ns, 'takes-last');
    const two = { networks: [{ network: 'net1' }, { network: 'one-left' }] };
    await create('Instance', instance('two-nets', two), ns);
    await until('NetworkExhausted', async () => {
      const i = await getInstance(ns, 'two-nets');
      return cond(i?.status, 'NetworkReady')?.reason === 'NetworkExhausted';
    });
    // A Network change wakes the waiting Instance: its retry must not drop Scheduled.
    await create('Network', {
      metadata: { name: 'wake-up' },
      spec: { cidr: '10.230.0.0/29', gateway: '10.230.0.1', bridge: 'br-wake-up' },
    });
    await sleep(1500);
    const retried = (await getInstance(ns, 'two-nets')) as Instance;
    expect(cond(retried.status, 'Scheduled')).toMatchObject({ status: 'True', reason: 'Bound' });
    await api.deleteNamespacedCustomObject({
      ...kovaApi('instances'),
      namespace: ns,
      name: 'takes-last',
    });
    await removeCleanupFinalizer(ns, 'takes-last');
    const done = await until('both addresses', async () => {
      const i = await getInstance(ns, 'two-nets');
      return i?.status?.interfaces?.length === 2 ? i : undefined;
    });
    expect(cond(done.status, 'Scheduled')).toMatchObject({ status: 'True', reason: 'Bound' });
  });

  it('records the generation it acted on after a spec change: kubectl wait returns', async () => {
    await create('Instance', instance('moved-later', {}, 'nowhere'), ns);
    await until('NoValidHost', async () => {
      const i = await getInstance(ns, 'moved-later');
      return cond(i?.status, 'Scheduled')?.reason === 'NoValidHost';
    });
    await api.patchNamespacedCustomObject(
      {
        ...kovaApi('instances'),
        namespace: ns,
        name: 'moved-later',
        body: { spec: { nodeSelector: { pool: 'spare' } } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    // kubectl wait ignores a condition whose observedGeneration is behind the object's.
    // Asynchronously: the operator under test runs in this process.
    const wait = await execFileAsync(kubectlPath(), [
      ...['--kubeconfig', cp.endpoints.kubeconfigPath, 'wait', '-n', ns],
      ...['--for=condition=Scheduled', 'inst/moved-later', '--timeout=20s'],
    ]);
    expect(wait.stdout).toContain('condition met');
    const moved = (await getInstance(ns, 'moved-later')) as Instance;
    expect(moved.metadata.generation).toBe(2);
    expect(moved.status?.observedGeneration).toBe(2);
    expect(cond(moved.status, 'Scheduled')?.observedGeneration).toBe(2);
  });

  it('moves the IPAllocations of an earlier release into IPBlocks before it allocates anything', async () => {
    // A bound Instance whose address an earlier release recorded as an IPAllocation.
    await create('Instance', instance('from-before'), ns);
    const inst = await bound('from-before');
    const ip = inst.status?.interfaces?.[0]?.ip as string;
    await stopOperator(operator);
    await installLegacyAllocationKind();
    await forget(ip);
    const legacyApi = { group: GROUP, version: VERSION, plural: 'ipallocations' };
    const legacy = (address: string, who: { name: string; uid: string }, held?: string) => ({
      apiVersion: API_VERSION,
      kind: 'IPAllocation',
      metadata: {
        name: `net1.${address.replace(/\./g, '-')}`,
        labels: held ? { 'compute.kova.dev/held-for-node': held } : {},
      },
      spec: {
        network: 'net1',
        ip: address,
        mac: 'fa:16:3e:00:00:01',
        instance: { namespace: ns, ...who },
      },
    });
    // Its VM still reported on hv-40: the address stays held for that node.
    const deleted = { name: 'deleted-while-down', uid: 'old-uid' };
    await fleet.reportDomains('hv-40', [deleted.uid]);
    for (const body of [
      legacy(ip, { name: 'from-before', uid: inst.metadata.uid }),
      legacy('10.100.14.2', deleted, 'hv-40'),
    ])
      await api.createClusterCustomObject({ ...legacyApi, body });
    operator = await startOperator();
    await until('the legacy objects to be gone', async () => {
      const list = (await api.listClusterCustomObject(legacyApi)) as { items: unknown[] };
      return list.items.length === 0;
    });
    const held = (await allocations()).filter((a) =>
      [inst.metadata.uid, 'old-uid'].includes(a.instance.uid),
    );
    expect(held.map((a) => [a.ip, a.instance.name, a.heldForNode])).toEqual([
      [ip, 'from-before', undefined],
      ['10.100.14.2', deleted.name, 'hv-40'],
    ]);
    // Still held: a fixed IP asking for one is refused.
    await create(
      'Instance',
      instance('wants-old', { networks: [{ network: 'net1', fixedIP: ip }] }),
      ns,
    );
    await until('FixedIPInUse for an adopted address', async () => {
      const i = await getInstance(ns, 'wants-old');
      return cond(i?.status, 'NetworkReady')?.reason === 'FixedIPInUse';
    });
    // Its VM gone from hv-40: the held address goes, as any held one does.
    await fleet.reportDomains('hv-40', []);
    await until(
      'the held address to be released',
      async () => !(await allocations()).some((a) => a.instance.uid === deleted.uid),
      20_000,
    );
  });

  it('#12.1 schedules even when releasing an orphaned address fails on taking over', async () => {
    await stopOperator(operator);
    // Alone in its block: releasing it deletes the block, which the policy refuses.
    const orphan = {
      metadata: { name: 'net1.10-100-15-192', labels: { 'compute.kova.dev/network': 'net1' } },
      spec: {
        network: 'net1',
        cidr: '10.100.15.192/26',
        addresses: [
          {
            ip: '10.100.15.250',
            mac: 'fa:16:3e:64:0f:fa',
            instance: { namespace: ns, name: 'gone', uid: 'gone' },
          },
        ],
      },
    };
    await create('IPBlock', orphan);
    await denyDeletesOf(orphan.metadata.name);
    operator = await startOperator();
    await create('Instance', instance('after-takeover'), ns);
    await bound('after-takeover');
    const orphaned = async () => (await allocations()).some((a) => a.instance.uid === 'gone');
    expect(await orphaned()).toBe(true);
    await allowDeletes();
    await until('the orphan to be released on a retry', async () => !(await orphaned()), 20_000);
  });
});

describe('#13.5 what an Instance was given does not change under it', () => {
  let ns: string;
  beforeAll(async () => {
    ns = await namespace('given');
    // 2048 MiB schedulable (512 reserved, RAM ratio 1): after 1536 MiB, no room for 1024 more.
    await fleet.create([
      { name: 'hv-given', vcpus: 4, memoryMiB: 2560, diskGiB: 100, labels: { pool: 'given' } },
    ]);
    await create('Flavor', {
      metadata: { name: 'given' },
      spec: { vcpus: 2, memoryMiB: 1536, rootDiskGiB: 10, swapMiB: 512 },
    });
  });

  it('still counts a bound Instance whose Flavor was deleted before the operator restarted', async () => {
    await create('Instance', instance('first', { flavor: 'given' }, 'given'), ns);
    const first = await until('first bound', async () => {
      const i = await getInstance(ns, 'first');
      return i?.status?.nodeName ? i : undefined;
    });
    expect(first.status?.nodeName).toBe('hv-given');
    expect(first.status?.flavor).toEqual({
      name: 'given',
      vcpus: 2,
      memoryMiB: 1536,
      rootDiskGiB: 10,
      ephemeralGiB: 0,
      swapMiB: 512,
    });
    expect(first.status?.image).toEqual({ name: 'guest', sha256: 'a'.repeat(64), format: 'qcow2' });
    await api.deleteClusterCustomObject({ ...kovaApi('flavors'), name: 'given' });
    await stopOperator(operator);
    operator = await startOperator();
    await create('Instance', instance('second', {}, 'given'), ns);
    // Bound or refused, whichever the operator decides: bound onto hv-given is the defect.
    const second = await until('the second to be bound or refused', async () => {
      const i = await getInstance(ns, 'second');
      const refused = cond(i?.status, 'Scheduled')?.reason === 'NoValidHost';
      return i?.status?.nodeName || refused ? i : undefined;
    });
    expect(second.status?.nodeName).toBeUndefined();
    expect(cond(second.status, 'Scheduled')?.message).toContain('insufficient memory');
    expect((await getInstance(ns, 'first'))?.status?.flavor?.memoryMiB).toBe(1536);
  });
});

/** Takes an address out of its IPBlock, as a release before IPBlocks never put it there. */
async function forget(ip: string): Promise<void> {
  const list = (await api.listClusterCustomObject(kovaApi('ipblocks'))) as { items: IIPBlock[] };
  const block = list.items.find((b) => b.spec.addresses?.some((a) => a.ip === ip)) as IIPBlock;
  const addresses = (block.spec.addresses ?? []).filter((a) => a.ip !== ip);
  const name = block.metadata?.name as string;
  await api.replaceClusterCustomObject({
    ...kovaApi('ipblocks'),
    name,
    body: { ...block, spec: { ...block.spec, addresses } },
  });
}

/** The IPAllocation kind of earlier releases (one object per address), as they installed it. */
async function installLegacyAllocationKind(): Promise<void> {
  const ext = kc.makeApiClient(ApiextensionsV1Api);
  await ext.createCustomResourceDefinition({
    body: {
      metadata: { name: `ipallocations.${GROUP}` },
      spec: {
        group: GROUP,
        scope: 'Cluster',
        names: { kind: 'IPAllocation', plural: 'ipallocations', singular: 'ipallocation' },
        versions: [
          {
            name: VERSION,
            served: true,
            storage: true,
            schema: {
              openAPIV3Schema: { type: 'object', x_kubernetes_preserve_unknown_fields: true },
            },
          },
        ],
      },
    },
  });
  await until('the IPAllocation kind to be served', async () =>
    api.listClusterCustomObject({ group: GROUP, version: VERSION, plural: 'ipallocations' }).then(
      () => true,
      () => false,
    ),
  );
}

/** A ValidatingAdmissionPolicy that refuses deleting one IPBlock: an injected API failure. */
async function denyDeletesOf(name: string): Promise<void> {
  const admission = kc.makeApiClient(AdmissionregistrationV1Api);
  await admission.createValidatingAdmissionPolicy({
    body: {
      metadata: { name: 'test-deny-delete' },
      spec: {
        failurePolicy: 'Fail',
        matchConstraints: {
          resourceRules: [
            {
              apiGroups: [GROUP],
              apiVersions: ['*'],
              operations: ['DELETE'],
              resources: ['ipblocks'],
            },
          ],
        },
        validations: [
          { expression: `oldObject.metadata.name != '${name}'`, message: 'injected failure' },
        ],
      },
    },
  });
  await admission.createValidatingAdmissionPolicyBinding({
    body: {
      metadata: { name: 'test-deny-delete' },
      spec: { policyName: 'test-deny-delete', validationActions: ['Deny'] },
    },
  });
  // Policies take effect asynchronously: wait until the delete is really refused.
  await until('the policy to refuse deletes', async () => {
    const dry = await api
      .deleteClusterCustomObject({ ...kovaApi('ipblocks'), name, dryRun: 'All' })
      .then(
        () => 'allowed',
        (err) => String(apiStatus(err)),
      );
    return dry !== 'allowed';
  });
}

async function allowDeletes(): Promise<void> {
  const admission = kc.makeApiClient(AdmissionregistrationV1Api);
  await admission.deleteValidatingAdmissionPolicyBinding({ name: 'test-deny-delete' });
  await admission.deleteValidatingAdmissionPolicy({ name: 'test-deny-delete' });
}

/** Sum of the API server's apiserver_request_total series carrying every given label. */
async function apiServerCount(...labels: string[]): Promise<number> {
  const text = await new Promise<string>((resolve, reject) => {
    const url = new URL(`${kc.getCurrentCluster()!.server}/metrics`);
    const opts: https.RequestOptions = { method: 'GET' };
    void kc.applyToHTTPSOptions(opts).then(() => {
      https
        .get(url, opts, (res) => {
          let body = '';
          res.on('data', (c) => (body += c));
          res.on('end', () => resolve(body));
        })
        .on('error', reject);
    });
  });
  return text
    .split('\n')
    .filter((l) => l.startsWith('apiserver_request_total{') && labels.every((x) => l.includes(x)))
    .reduce((n, l) => n + Number(l.split(' ').pop()), 0);
}
