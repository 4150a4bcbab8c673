// Address allocation arbitrated by the API server: an address belongs to whoever created the
// IPAllocation named after it. Creating an existing name fails with 409, so two allocators —
// even two operator replicas that both believe they lead — can never hand out one address twice.
import {
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
} from '@kubernetes/client-node';
import { apiStatus, type Informer } from '@kova/controller-kit';
import {
  API_VERSION,
  INSTANCE_UID_LABEL,
  NETWORK_LABEL,
  networkNotUsableMessage,
  networkUsable,
  PLURAL,
  GROUP,
  VERSION,
  type IIPAllocation,
  type INetwork,
  type InstanceObject,
  type Interface,
} from '@kova/crds';
import {
  allocationRanges,
  contains,
  ipToNumber,
  macFor,
  numberToIp,
  parseCidr,
  type Range,
} from './ipv4.js';

export type Allocation = { interface: Interface } | { reason: string; message: string };

export interface NetworkRequest {
  network: string;
  fixedIP?: string;
}

/** Set on the addresses of an Instance deleted while its node was down: held for that node. */
export const HELD_FOR_NODE_LABEL = 'compute.kova.dev/held-for-node';

const allocationName = (network: string, ip: string) => `${network}.${ip.replace(/\./g, '-')}`;
const api = { group: GROUP, version: VERSION, plural: PLURAL.IPAllocation };

export class AddressAllocator {
  private readonly custom: CustomObjectsApi;
  /** Addresses in use per network: the informer's view plus our own creations it has not shown yet. */
  private readonly used = new Map<string, Set<number>>();
  /** Per Instance and network, every allocation seen: more than one only after a race. */
  private readonly byInstance = new Map<string, Map<string, IIPAllocation[]>>();
  private readonly byName = new Map<string, IIPAllocation>();
  private readonly cursor = new Map<string, number>();
  /** Allocations under way per network, checked usable and not yet answered (deletion waits). */
  private readonly inFlight = new Map<string, number>();

  constructor(
    kc: KubeConfig,
    private readonly networks: Informer<INetwork>,
    allocations: Informer<IIPAllocation>,
  ) {
    this.custom = kc.makeApiClient(CustomObjectsApi);
    allocations.on((a, type) => (type === 'delete' ? this.forget(a) : this.remember(a)));
  }

  /** Addresses on the network being created right now: not in any view yet. */
  creating(network: string): number {
    return this.inFlight.get(network) ?? 0;
  }

  allocationsOf(uid: string): IIPAllocation[] {
    return [...(this.byInstance.get(uid)?.values() ?? [])].flat();
  }

  /** Allocations held for a node after their Instance was deleted while the node was down. */
  held(): IIPAllocation[] {
    return [...this.byName.values()].filter((a) => a.metadata?.labels?.[HELD_FOR_NODE_LABEL]);
  }

  async allocate(inst: InstanceObject, req: NetworkRequest): Promise<Allocation> {
    const net = this.networks.get(req.network);
    if (!net) {
      return {
        reason: 'NetworkNotFound',
        message: `Network ${req.network} does not exist; create it or fix spec.networks`,
      };
    }
    const mine = await this.heldBy(inst.metadata.uid, req.network);
    if (mine) return { interface: toInterface(net, mine.spec.ip) };
    // What an Instance holds stays; a new address only on a Network the operator has checked.
    const notUsable = networkWait(req.network, net);
    if (notUsable) return notUsable;
    // From the check on, until the address is in the view, the Network's deletion waits.
    this.inFlight.set(req.network, this.creating(req.network) + 1);
    const result = await (
      req.fixedIP ? this.allocateFixed(inst, net, req.fixedIP) : this.allocateNext(inst, net)
    ).finally(() => {
      const left = this.creating(req.network) - 1;
      if (left > 0) this.inFlight.set(req.network, left);
      else this.inFlight.delete(req.network);
    });
    // A concurrent allocation for the same Instance (two terms, two replicas) may also have won.
    const kept = await this.heldBy(inst.metadata.uid, req.network);
    return kept && 'interface' in result ? { interface: toInterface(net, kept.spec.ip) } : result;
  }

  /**
   * The Instance's address on the network; should a race have given it two, the first by name
   * is kept and the others deleted, so none is left that nobody tracks.
   */
  private async heldBy(uid: string, network: string): Promise<IIPAllocation | undefined> {
    const all = [...(this.byInstance.get(uid)?.get(network) ?? [])].sort((a, b) =>
      (a.metadata?.name as string).localeCompare(b.metadata?.name as string),
    );
    for (const extra of all.slice(1)) await this.remove(extra);
    return all[0];
  }

  /** Keeps the Instance's addresses from being handed out again until the node is back. */
  async holdForNode(uid: string, node: string): Promise<void> {
    const body = { metadata: { labels: { [HELD_FOR_NODE_LABEL]: node } } };
    const headers = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    for (const a of this.allocationsOf(uid)) {
      const name = a.metadata?.name as string;
      const patched = await this.custom
        .patchClusterCustomObject({ ...api, name, body }, headers)
        .catch((err) => {
          if (apiStatus(err) !== 404) throw err;
        });
      if (patched) this.remember(patched as IIPAllocation);
    }
  }

  /** Frees an address held for a node, once the caller judged the node back. */
  async releaseHeld(a: IIPAllocation): Promise<void> {
    await this.remove(a);
  }

  /** Releases every address the Instance holds, except those held for a node that is down. */
  async release(uid: string): Promise<void> {
    for (const a of this.allocationsOf(uid)) {
      if (!a.metadata?.labels?.[HELD_FOR_NODE_LABEL]) await this.remove(a);
    }
  }

  private async remove(a: IIPAllocation): Promise<void> {
    const name = a.metadata?.name as string;
    await this.custom.deleteClusterCustomObject({ ...api, name }).catch((err) => {
      if (apiStatus(err) !== 404) throw err;
    });
    this.forget(a);
  }

  private async allocateFixed(
    inst: InstanceObject,
    net: INetwork,
    ip: string,
  ): Promise<Allocation> {
    const name = net.metadata?.name as string;
    const subnet = parseCidr(net.spec.cidr);
    const n = ipToNumber(ip);
    if (
      !contains(subnet, n) ||
      n === subnet.network ||
      n === subnet.broadcast ||
      ip === net.spec.gateway
    ) {
      return {
        reason: 'FixedIPOutsideNetwork',
        message: `fixed IP ${ip} is not a usable host address of Network ${name} (${net.spec.cidr}, gateway ${net.spec.gateway})`,
      };
    }
    const known = this.byName.get(allocationName(name, ip));
    if (known && known.spec.instance.uid !== inst.metadata.uid) return inUse(name, ip, known);
    const created = await this.tryCreate(inst, name, ip);
    if (created) return { interface: toInterface(net, ip) };
    const holder = await this.holderOf(name, ip);
    if (holder?.spec.instance.uid === inst.metadata.uid) return { interface: toInterface(net, ip) };
    return inUse(name, ip, holder);
  }

  private async allocateNext(inst: InstanceObject, net: INetwork): Promise<Allocation> {
    const name = net.metadata?.name as string;
    const ranges = allocationRanges(net.spec);
    for (const n of this.candidates(name, ranges)) {
      // Reserved before the create call, so that concurrent allocations try other addresses.
      this.usedSet(name).add(n);
      this.cursor.set(name, n + 1);
      const created = await this.tryCreate(inst, name, numberToIp(n)).catch((err) => {
        this.usedSet(name).delete(n);
        throw err;
      });
      if (created) return { interface: toInterface(net, numberToIp(n)) };
    }
    return {
      reason: 'NetworkExhausted',
      message: `Network ${name} has no free address left in its allocation pools; widen them or delete Instances`,
    };
  }

  /** Free-looking addresses, starting after the last one handed out, wrapping around once. */
  private *candidates(network: string, ranges: Range[]): Generator<number> {
    const used = this.usedSet(network);
    const start = this.cursor.get(network) ?? 0;
    const all = (from: number, to: number) =>
      ranges.flatMap((r) => {
        const lo = Math.max(r.start, from);
        const hi = Math.min(r.end, to);
        return lo <= hi ? [[lo, hi] as const] : [];
      });
    for (const [lo, hi] of [...all(start, Infinity), ...all(0, start - 1)]) {
      for (let n = lo; n <= hi; n++) if (!used.has(n)) yield n;
    }
  }

  private async tryCreate(inst: InstanceObject, network: string, ip: string): Promise<boolean> {
    const { name, namespace, uid } = inst.metadata;
    const body: IIPAllocation = {
      apiVersion: API_VERSION,
      kind: 'IPAllocation',
      metadata: {
        name: allocationName(network, ip),
        labels: { [INSTANCE_UID_LABEL]: uid, [NETWORK_LABEL]: network },
      },
      spec: { network, ip, mac: macFor(ip), instance: { namespace, name, uid } },
    };
    try {
      this.remember(
        (await this.custom.createClusterCustomObject({ ...api, body })) as IIPAllocation,
      );
      return true;
    } catch (err) {
      if (apiStatus(err) !== 409) throw err;
      this.usedSet(network).add(ipToNumber(ip));
      return false;
    }
  }

  private async holderOf(network: string, ip: string): Promise<IIPAllocation | undefined> {
    const a = (await this.custom
      .getClusterCustomObject({ ...api, name: allocationName(network, ip) })
      .catch((err) => {
        if (apiStatus(err) !== 404) throw err;
      })) as IIPAllocation | undefined;
    if (a) this.remember(a);
    return a;
  }

  private usedSet(network: string): Set<number> {
    let s = this.used.get(network);
    if (!s) {
      s = new Set();
      this.used.set(network, s);
    }
    return s;
  }

  private remember(a: IIPAllocation): void {
    const name = a.metadata?.name as string;
    this.usedSet(a.spec.network).add(ipToNumber(a.spec.ip));
    this.byName.set(name, a);
    const uid = a.spec.instance.uid;
    const mine = this.byInstance.get(uid) ?? new Map<string, IIPAllocation[]>();
    const others = (mine.get(a.spec.network) ?? []).filter((o) => o.metadata?.name !== name);
    mine.set(a.spec.network, [...others, a]);
    this.byInstance.set(uid, mine);
  }

  private forget(a: IIPAllocation): void {
    const name = a.metadata?.name as string;
    this.used.get(a.spec.network)?.delete(ipToNumber(a.spec.ip));
    this.byName.delete(name);
    const mine = this.byInstance.get(a.spec.instance.uid);
    const rest = (mine?.get(a.spec.network) ?? []).filter((o) => o.metadata?.name !== name);
    if (rest.length) mine?.set(a.spec.network, rest);
    else mine?.delete(a.spec.network);
    if (mine?.size === 0) this.byInstance.delete(a.spec.instance.uid);
  }
}

/**
 * Why no new address can be handed out on the Network yet (undefined: it can): it is being
 * deleted, or the operator has not found it usable (refused, no VNI yet, not checked yet).
 * The Instance waits; a change of the Network wakes it.
 */
export function networkWait(
  name: string,
  net: INetwork,
): { reason: string; message: string } | undefined {
  if (net.metadata?.deletionTimestamp)
    return {
      reason: 'NetworkNotReady',
      message: `Network ${name} is being deleted; it hands out no new addresses`,
    };
  if (networkUsable(net)) return undefined;
  return { reason: 'NetworkNotReady', message: networkNotUsableMessage(name, net) };
}

function inUse(network: string, ip: string, holder: IIPAllocation | undefined): Allocation {
  const i = holder?.spec.instance;
  const node = holder?.metadata?.labels?.[HELD_FOR_NODE_LABEL];
  const who = i ? `Instance ${i.namespace}/${i.name}` : 'another Instance';
  const why = node
    ? `; ${who} was deleted while hypervisor ${node} was down and its VM may still run there: ` +
      `the address is freed when that node's agent reports the VM gone, or when an admin ` +
      `deletes Hypervisor ${node} because the node is gone for good`
    : '';
  return {
    reason: 'FixedIPInUse',
    message: `fixed IP ${ip} on Network ${network} is held by ${who}${why}`,
  };
}

export function toInterface(net: INetwork, ip: string): Interface {
  return {
    network: net.metadata?.name as string,
    ip,
    mac: macFor(ip),
    gateway: net.spec.gateway,
    prefix: parseCidr(net.spec.cidr).prefix,
  };
}
