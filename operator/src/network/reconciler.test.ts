// The Network controller against fakes, in the manner of sample-controller's expected-actions
// tests: given a view of Networks, addresses, Instances and Hypervisors, which API writes
// (finalizers, status) and Events come out of a sync.
import { describe, expect, it } from '@jest/globals';
import { logger, type EventRecorder, type InformerEvent, type Patcher } from '@kova/controller-kit';
import {
  NETWORK_FINALIZER,
  NETWORK_LABEL,
  networkUsable,
  type IHypervisor,
  type IIPBlock,
  type INetwork,
  type InstanceObject,
} from '@kova/crds';
import { Registry } from 'prom-client';
import { configFromEnv } from '../config.js';
import { networkWait } from '../ipam/allocator.js';
import { leasesOf, type AddressLease } from '../ipam/blocks.js';
import { NetworkController, type NetworkInformers } from './controller.js';
import { networkMetrics } from './metrics.js';
import { NetworkReconciler } from './reconciler.js';
import { holdersOf, lowestFreeVni, olderFirst } from './rules.js';
import { NetworkUsage } from './usage.js';

type Call = [string, ...unknown[]];
type Condition = { type: string; status: string; reason: string; message: string };
type Net = INetwork & { metadata: { name: string; resourceVersion: string } };

let rvs = 100;

function network(
  name: string,
  spec: Partial<INetwork['spec']> = {},
  meta: Partial<NonNullable<INetwork['metadata']>> = {},
  status?: INetwork['status'],
): Net {
  return {
    apiVersion: 'compute.kova.dev/v1alpha1',
    kind: 'Network',
    metadata: {
      name,
      uid: `uid-${name}`,
      generation: 1,
      resourceVersion: String(rvs++),
      creationTimestamp: '2026-11-24T10:00:00Z',
      finalizers: [NETWORK_FINALIZER],
      ...meta,
    },
    spec: { cidr: '10.0.0.0/24', gateway: '10.0.0.1', bridge: `br-${name}`, ...spec },
    ...(status ? { status } : {}),
  } as Net;
}

/** A block holding one address (so each address's block comes and goes on its own). */
function allocation(net: string, ip: string, ns: string, name: string, held?: string): IIPBlock {
  const address = {
    ip,
    mac: 'fa:16:3e:00:00:00',
    instance: { namespace: ns, name, uid: `${ns}/${name}` },
    ...(held ? { heldForNode: held } : {}),
  };
  return {
    apiVersion: 'compute.kova.dev/v1alpha1',
    kind: 'IPBlock',
    metadata: { name: `${net}.${ip.replace(/\./g, '-')}`, labels: { [NETWORK_LABEL]: net } },
    spec: { network: net, cidr: `${ip}/32`, addresses: [address] },
  };
}

function bound(name: string, node: string, ...networks: string[]): InstanceObject {
  return {
    metadata: { name, namespace: 'ns', uid: `uid-${name}` },
    spec: { flavor: 'f', image: 'i', networks: networks.map((network) => ({ network })) },
    status: {
      nodeName: node,
      interfaces: networks.map((network) => ({
        network,
        ip: '10.0.0.9',
        mac: 'm',
        gateway: 'g',
        prefix: 24,
      })),
    },
  } as unknown as InstanceObject;
}

const hypervisor = (name: string, tunnelAddress?: string) =>
  ({ metadata: { name }, status: tunnelAddress ? { tunnelAddress } : {} }) as IHypervisor;

class Fakes {
  calls: Call[] = [];
  nets = new Map<string, Net>();
  usage = new NetworkUsage();
  /** What the API server lists, when it differs from the view. */
  freshNetworks: Net[] | undefined;
  freshLeases: AddressLease[] = [];
  creating = 0;
  config = { ...configFromEnv(), vniMin: 1000, vniMax: 1002 };
  readonly registry = new Registry();

  networks = {
    get: (n: string) => this.nets.get(n),
    list: () => [...this.nets.values()],
  };

  patcher = {
    setFinalizers: async (ref: { name: string }, _rv: string, finalizers: string[]) => {
      this.calls.push(['setFinalizers', ref.name, finalizers]);
      const net = this.nets.get(ref.name) as Net;
      return { ...net, metadata: { ...net.metadata, finalizers, resourceVersion: String(rvs++) } };
    },
    mergeStatus: async (ref: { name: string }, _rv: string, status: Record<string, unknown>) => {
      this.calls.push(['status', ref.name, status]);
      return {};
    },
  } as unknown as Patcher;

  events = {
    record: (o: { metadata?: { name?: string } }, type: string, reason: string, message: string) =>
      this.calls.push(['event', o.metadata?.name, type, reason, message]),
  } as unknown as EventRecorder;

  reconciler = new NetworkReconciler({
    networks: this.networks,
    usage: this.usage,
    allocator: { creating: () => this.creating },
    api: {
      listNetworks: async () => (
        this.calls.push(['listNetworks']),
        this.freshNetworks ?? [...this.nets.values()]
      ),
      listLeases: async (n) => (this.calls.push(['listLeases', n]), this.freshLeases),
    },
    patcher: this.patcher,
    events: this.events,
    config: this.config,
    metrics: networkMetrics(this.registry, this.networks, this.usage),
    logger: logger('network-test'),
  });

  add(...nets: Net[]): this {
    for (const n of nets) this.nets.set(n.metadata.name, n);
    return this;
  }

  async sync(name: string) {
    this.calls = [];
    return this.reconciler.sync(name);
  }

  /** The one status write of the last sync. */
  status(): Record<string, unknown> {
    const writes = this.calls.filter((c) => c[0] === 'status');
    expect(writes).toHaveLength(1);
    return writes[0]?.[2] as Record<string, unknown>;
  }

  ready() {
    const conditions = this.status().conditions as Condition[];
    return conditions.find((c) => c.type === 'Ready');
  }

  recorded(): unknown[][] {
    return this.calls.filter((c) => c[0] === 'event').map((c) => c.slice(2, 4));
  }

  /** The Network as the API server would show it after the last status write. */
  applied(name: string): Net {
    const net = this.nets.get(name) as Net;
    const patch = this.status();
    const status = { ...net.status, ...patch } as Record<string, unknown>;
    for (const k of Object.keys(status)) if (status[k] === null) delete status[k];
    return { ...net, metadata: { ...net.metadata, resourceVersion: String(rvs++) }, status } as Net;
  }
}

describe('a new Network', () => {
  it('gets the finalizer first, then its VNI and Ready in one status write', async () => {
    const f = new Fakes().add(network('a', {}, { finalizers: [] }));
    await f.sync('a');
    expect(f.calls[0]).toEqual(['setFinalizers', 'a', [NETWORK_FINALIZER]]);
    const status = f.status();
    expect(status).toMatchObject({ vni: 1000, allocated: 0, available: 253, holders: 0 });
    expect(status.observedGeneration).toBe(1);
    expect(f.ready()).toMatchObject({ status: 'True', reason: 'Ready', observedGeneration: 1 });
    expect(f.recorded()).toEqual([
      ['Normal', 'VNIAssigned'],
      ['Normal', 'Ready'],
    ]);
    expect(networkUsable(f.applied('a'))).toBe(true);
  });

  it('takes the lowest VNI no other Network has, judged on a fresh list from the API server', async () => {
    const f = new Fakes().add(
      network('a', { cidr: '10.1.0.0/24' }, {}, { vni: 1000 }),
      network('c', { cidr: '10.3.0.0/24' }, {}, { vni: 1002 }),
      network('b', { cidr: '10.2.0.0/24' }, { creationTimestamp: '2026-11-24T11:00:00Z' }),
    );
    await f.sync('b');
    expect(f.calls.filter((c) => c[0] === 'listNetworks')).toHaveLength(1);
    expect(f.status().vni).toBe(1001);
  });

  it('writes nothing on a sync that finds nothing changed, and no Event again', async () => {
    const f = new Fakes().add(network('a'));
    await f.sync('a');
    f.add(f.applied('a'));
    await f.sync('a');
    expect(f.calls).toEqual([]);
  });

  it('does not assign when the API server shows a VNI the view has not: its view is behind', async () => {
    const f = new Fakes().add(network('a'));
    f.freshNetworks = [network('a', {}, {}, { vni: 1001 })];
    const result = await f.sync('a');
    expect(f.calls.map((c) => c[0])).toEqual(['listNetworks']);
    expect(result).toEqual({ requeueAfterMs: 200 });
  });

  it('is refused with VNIExhausted when the range is used up, and keeps waiting', async () => {
    const f = new Fakes().add(
      network('x', { cidr: '10.1.0.0/24' }, {}, { vni: 1000 }),
      network('y', { cidr: '10.2.0.0/24' }, {}, { vni: 1001 }),
      network('z', { cidr: '10.3.0.0/24' }, {}, { vni: 1002 }),
      network('late', { cidr: '10.4.0.0/24' }, { creationTimestamp: '2026-11-24T11:00:00Z' }),
    );
    await f.sync('late');
    expect(f.status().vni).toBeUndefined();
    expect(f.ready()).toMatchObject({ status: 'False', reason: 'VNIExhausted' });
    expect(f.ready()?.message).toContain('from 1000 to 1002');
    expect(f.recorded()).toEqual([['Warning', 'VNIExhausted']]);
  });

  it('unmanaged: Ready without a VNI', async () => {
    const f = new Fakes().add(network('u', { managed: false }));
    await f.sync('u');
    expect(f.calls.some((c) => c[0] === 'listNetworks')).toBe(false);
    expect(f.status().vni).toBeUndefined();
    expect(f.ready()).toMatchObject({ status: 'True', reason: 'Ready' });
    expect(networkUsable(f.applied('u'))).toBe(true);
  });

  it('records the new generation after a spec change, in status and in Ready', async () => {
    const f = new Fakes().add(network('a'));
    await f.sync('a');
    const ready = f.applied('a');
    f.add({ ...ready, metadata: { ...ready.metadata, generation: 2 } });
    expect(networkUsable(f.nets.get('a') as Net)).toBe(false);
    await f.sync('a');
    expect(f.status().observedGeneration).toBe(2);
    expect(f.ready()).toMatchObject({ status: 'True', observedGeneration: 2 });
    expect(networkUsable(f.applied('a'))).toBe(true);
  });
});

describe('conflicts: the later Network is refused, the older keeps working', () => {
  const older = () => network('first', { cidr: '10.0.0.0/16' }, {}, { vni: 1000 });
  const later = (spec: Partial<INetwork['spec']>, name = 'second') =>
    network(name, spec, { creationTimestamp: '2026-11-24T10:00:05Z' });

  it('refuses an overlapping CIDR, naming the other Network, with no VNI and a Warning once', async () => {
    const f = new Fakes().add(older(), later({ cidr: '10.0.3.0/24' }));
    await f.sync('second');
    expect(f.calls.some((c) => c[0] === 'listNetworks')).toBe(false);
    expect(f.status().vni).toBeUndefined();
    const ready = f.ready();
    expect(ready).toMatchObject({ status: 'False', reason: 'CIDROverlap' });
    expect(ready?.message).toContain('overlaps Network first (10.0.0.0/16)');
    expect(f.recorded()).toEqual([['Warning', 'CIDROverlap']]);
    expect(networkWait('second', f.applied('second'))?.message).toContain('(CIDROverlap)');
    f.add(f.applied('second'));
    await f.sync('second');
    expect(f.calls).toEqual([]);
  });

  it('refuses the same bridge', async () => {
    const f = new Fakes().add(older(), later({ cidr: '10.9.0.0/24', bridge: 'br-first' }));
    await f.sync('second');
    expect(f.ready()).toMatchObject({ status: 'False', reason: 'BridgeConflict' });
    expect(f.ready()?.message).toContain('Network first');
  });

  it('leaves the older one Ready', async () => {
    const first = older();
    const f = new Fakes().add(first, later({ cidr: '10.0.3.0/24', bridge: 'br-first' }));
    await f.sync('first');
    expect(f.ready()).toMatchObject({ status: 'True', reason: 'Ready' });
    expect(f.status().vni).toBeUndefined(); // kept as it was
  });

  it('makes the later one Ready once the older one is gone', async () => {
    const f = new Fakes().add(older(), later({ cidr: '10.0.3.0/24' }));
    await f.sync('second');
    f.add(f.applied('second'));
    f.nets.delete('first');
    await f.sync('second');
    expect(f.status().vni).toBe(1000);
    expect(f.ready()).toMatchObject({ status: 'True', reason: 'Ready' });
    expect(f.recorded()).toEqual([
      ['Normal', 'VNIAssigned'],
      ['Normal', 'Ready'],
    ]);
  });

  it('breaks a tie of creation times by name', async () => {
    const t = { creationTimestamp: '2026-11-24T10:00:00Z' };
    const a = network('a', {}, t);
    const b = network('b', {}, t);
    expect(olderFirst(a, b)).toBeLessThan(0);
    const f = new Fakes().add(b, a);
    await f.sync('b');
    expect(f.ready()).toMatchObject({ reason: 'CIDROverlap' });
  });

  it('never hands a recorded VNI to another: a duplicate refuses the later one, its VNI kept', async () => {
    const f = new Fakes().add(
      older(),
      network(
        'copy',
        { cidr: '10.8.0.0/24' },
        { creationTimestamp: '2026-11-24T10:00:05Z' },
        { vni: 1000 },
      ),
    );
    await f.sync('copy');
    expect(f.ready()).toMatchObject({ status: 'False', reason: 'VNIConflict' });
    expect('vni' in f.status()).toBe(false);
  });
});

describe('usage in status', () => {
  it('counts addresses (fixed ones outside the pools are not taken from them), holders and nodes with tunnel endpoints', async () => {
    const f = new Fakes().add(
      network(
        'a',
        { allocationPools: [{ start: '10.0.0.10', end: '10.0.0.19' }] },
        {},
        { vni: 1000 },
      ),
    );
    f.usage.observeBlock(allocation('a', '10.0.0.10', 'ns', 'one'), 'add');
    f.usage.observeBlock(allocation('a', '10.0.0.11', 'ns', 'two'), 'add');
    f.usage.observeBlock(allocation('a', '10.0.0.200', 'ns', 'fixed'), 'add');
    f.usage.observeBlock(allocation('other', '10.0.0.12', 'ns', 'x'), 'add');
    f.usage.observeHypervisor(hypervisor('hv-b', '192.168.0.2'), 'add');
    f.usage.observeHypervisor(hypervisor('hv-a'), 'add');
    expect(f.usage.observeInstance(bound('one', 'hv-b', 'a'), 'add')).toEqual(['a']);
    f.usage.observeInstance(bound('two', 'hv-a', 'a', 'other'), 'add');
    f.usage.observeInstance(bound('fixed', 'hv-b', 'a'), 'add');
    await f.sync('a');
    expect(f.status()).toMatchObject({
      allocated: 3,
      available: 8,
      holders: 3,
      nodes: [{ name: 'hv-a' }, { name: 'hv-b', tunnelAddress: '192.168.0.2' }],
    });
  });

  it('follows Instances moving and going and Hypervisors reporting and vanishing', () => {
    const u = new NetworkUsage();
    u.observeHypervisor(hypervisor('hv-a', '192.168.0.1'), 'add');
    u.observeInstance(bound('vm', 'hv-a', 'a'), 'add');
    expect(u.observeInstance(bound('vm', 'hv-a', 'a'), 'update')).toEqual([]);
    // A second Instance on a node already listed changes no node: nothing to sync soon.
    expect(u.observeInstance(bound('vm2', 'hv-a', 'a'), 'add')).toEqual([]);
    expect(u.observeInstance(bound('vm2', 'hv-a', 'a'), 'delete')).toEqual([]);
    expect(u.nodesOf('a')).toEqual([{ name: 'hv-a', tunnelAddress: '192.168.0.1' }]);
    expect(u.observeInstance(bound('vm', 'hv-b', 'a'), 'update')).toEqual(['a']);
    expect(u.nodesOf('a')).toEqual([{ name: 'hv-b' }]);
    expect(u.observeHypervisor(hypervisor('hv-b', '192.168.0.2'), 'update')).toEqual(['a']);
    expect(u.observeHypervisor(hypervisor('hv-b', '192.168.0.2'), 'update')).toEqual([]);
    expect(u.nodesOf('a')).toEqual([{ name: 'hv-b', tunnelAddress: '192.168.0.2' }]);
    expect(u.observeHypervisor(hypervisor('hv-b'), 'delete')).toEqual(['a']);
    expect(u.nodesOf('a')).toEqual([{ name: 'hv-b' }]);
    expect(u.observeInstance(bound('vm', 'hv-b', 'a'), 'delete')).toEqual(['a']);
    expect(u.nodesOf('a')).toEqual([]);
  });
});

describe('deletion', () => {
  const deleting = (status?: INetwork['status']) =>
    network('a', {}, { deletionTimestamp: '2026-11-24T12:00:00Z' }, { vni: 1000, ...status });

  it('waits while Instances hold addresses, says who (the first five, then how many more), with a Warning', async () => {
    const f = new Fakes().add(deleting());
    for (let i = 0; i < 7; i++)
      f.usage.observeBlock(allocation('a', `10.0.0.${10 + i}`, 'ns', `vm-${i}`), 'add');
    const result = await f.sync('a');
    expect(f.calls.some((c) => c[0] === 'setFinalizers')).toBe(false);
    const ready = f.ready();
    expect(ready).toMatchObject({ status: 'False', reason: 'InUse' });
    expect(ready?.message).toContain(
      'held by 7 Instances: ns/vm-0, ns/vm-1, ns/vm-2, ns/vm-3, ns/vm-4 and 2 more',
    );
    expect(f.status()).toMatchObject({ holders: 7, allocated: 7 });
    expect(f.recorded()).toEqual([['Warning', 'InUse']]);
    expect(result).toEqual({ requeueAfterMs: 30_000 });
    expect(networkWait('a', f.nets.get('a') as Net)?.message).toContain('being deleted');

    f.add(f.applied('a'));
    await f.sync('a');
    expect(f.calls).toEqual([]); // the same holders: nothing to write, no Event

    f.usage.observeBlock(allocation('a', '10.0.0.16', 'ns', 'vm-6'), 'delete');
    await f.sync('a');
    expect(f.ready()?.message).toContain('held by 6 Instances');
    expect(f.recorded()).toEqual([['Warning', 'InUse']]);
  });

  it('names an address held for a node that is down', () => {
    const h = holdersOf(leasesOf(allocation('a', '10.0.0.5', 'ns', 'gone', 'hv-3')));
    expect(h.message).toBe('held by 1 Instance: ns/gone (deleted; held for node hv-3)');
  });

  it('lifts the finalizer once none is left, confirmed by the API server', async () => {
    const f = new Fakes().add(deleting({ holders: 1 }));
    await f.sync('a');
    expect(f.calls).toEqual([
      ['listLeases', 'a'],
      ['setFinalizers', 'a', []],
    ]);
  });

  it('keeps waiting when the API server still has an address the watch has not shown', async () => {
    const f = new Fakes().add(deleting());
    f.freshLeases = leasesOf(allocation('a', '10.0.0.5', 'ns', 'late'));
    const result = await f.sync('a');
    expect(f.calls.some((c) => c[0] === 'setFinalizers')).toBe(false);
    expect(f.ready()?.message).toContain('held by 1 Instance: ns/late');
    expect(result).toEqual({ requeueAfterMs: 1000 });
  });

  it('keeps waiting while an address creation of ours is in flight', async () => {
    const f = new Fakes().add(deleting());
    f.creating = 1;
    await f.sync('a');
    expect(f.calls.some((c) => c[0] === 'setFinalizers' || c[0] === 'listLeases')).toBe(false);
  });
});

describe('the view behind our own write', () => {
  it('looks again soon rather than write on a version it already wrote from', async () => {
    const f = new Fakes().add(network('a'));
    await f.sync('a');
    const result = await f.sync('a'); // the view has not moved
    expect(f.calls).toEqual([]);
    expect(result).toEqual({ requeueAfterMs: 200 });
  });
});

describe('helpers', () => {
  it('lowestFreeVni skips what is used and ends at the maximum', () => {
    expect(lowestFreeVni(new Set([5, 6, 8]), 5, 10)).toBe(7);
    expect(lowestFreeVni(new Set([5, 6]), 5, 6)).toBeUndefined();
  });

  it('an Instance waits on a Network the operator has not checked yet', () => {
    expect(networkWait('n', network('n'))).toEqual({
      reason: 'NetworkNotReady',
      message: 'Network n has not been checked by the operator yet',
    });
  });
});

/** Informers as ClusterState has them, driven by the test. */
class FakeInformer<T> {
  items = new Map<string, T>();
  handlers: ((o: T, t: InformerEvent) => void)[] = [];
  on(h: (o: T, t: InformerEvent) => void) {
    this.handlers.push(h);
  }
  list() {
    return [...this.items.values()];
  }
  get(name: string) {
    return this.items.get(name);
  }
  emit(key: string, o: T, t: InformerEvent) {
    if (t === 'delete') this.items.delete(key);
    else this.items.set(key, o);
    for (const h of this.handlers) h(o, t);
  }
}

describe('the controller under a burst of bindings', () => {
  it('coalesces 500 Instances binding onto 100 nodes into a few status writes', async () => {
    const informers = {
      networks: new FakeInformer<INetwork>(),
      instances: new FakeInformer<InstanceObject>(),
      blocks: new FakeInformer<IIPBlock>(),
      hypervisors: new FakeInformer<IHypervisor>(),
    };
    const f = new Fakes();
    const writes: Record<string, unknown>[] = [];
    const patcher = {
      setFinalizers: f.patcher.setFinalizers,
      mergeStatus: async (_ref: unknown, _rv: string, status: Record<string, unknown>) => {
        writes.push(status);
        // The API server's answer comes back through the watch.
        const net = informers.networks.get('bench') as Net;
        const next = { ...net, metadata: { ...net.metadata, resourceVersion: String(rvs++) } };
        next.status = { ...net.status, ...status } as INetwork['status'];
        setTimeout(() => informers.networks.emit('bench', next, 'update'), 5);
        return next;
      },
    } as unknown as Patcher;
    const config = { ...configFromEnv(), networkNodesDelayMs: 100, networkCountsDelayMs: 300 };
    const c = new NetworkController(
      {} as never,
      informers as unknown as NetworkInformers,
      { creating: () => 0 },
      config,
      logger('network-test'),
      new Registry(),
      {
        patcher,
        events: f.events,
        api: {
          listNetworks: async () => informers.networks.list() as Net[],
          listLeases: async () => [],
        },
      },
    );
    const net = network('bench', { cidr: '10.128.0.0/16' });
    informers.networks.emit('bench', net, 'add');
    f.nets.set('bench', net);
    const abort = new AbortController();
    const running = c.lead(abort.signal);
    await new Promise((r) => setTimeout(r, 50));
    expect(writes).toHaveLength(1); // VNI and Ready
    for (let i = 0; i < 500; i++) {
      const inst = bound(`vm-${i}`, `hv-${i % 100}`, 'bench');
      informers.blocks.emit(
        `a${i}`,
        allocation('bench', `10.128.${1 + Math.floor(i / 250)}.${i % 250}`, 'ns', `vm-${i}`),
        'add',
      );
      informers.instances.emit(`vm-${i}`, inst, 'add');
      if (i % 50 === 0) await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, 800));
    abort.abort();
    await running;
    // The first write gave the VNI; the burst over ~250 ms, nodes at a 100 ms delay and counts
    // at 300 ms, is a few more.
    expect(writes.length).toBeGreaterThanOrEqual(2);
    expect(writes.length).toBeLessThanOrEqual(5);
    const last = Object.assign({}, ...writes) as { nodes: unknown[]; holders: number };
    expect(last.nodes).toHaveLength(100);
    expect(last.holders).toBe(500);
  });
});
