// Address allocation arbitrated by the API server: an address belongs to the Instance its
// IPBlock lists it for, and every block write carries the resourceVersion it was computed from
// (block-writer.ts), so two allocators — even two operator replicas that both believe they
// lead — can never hand out one address twice.
import type { KubeConfig } from '@kubernetes/client-node';
import type { Informer } from '@kova/controller-kit';
import {
  networkNotUsableMessage,
  networkUsable,
  type IIPBlock,
  type INetwork,
  type InstanceObject,
  type Interface,
} from '@kova/crds';
import { BlockWriter } from './block-writer.js';
import { blockOf, leasesOf, type AddressLease, type BlockEdit } from './blocks.js';
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

export class AddressAllocator {
  private readonly writer: BlockWriter;
  /** Every block as last known: the informer's view, or our own write when it is newer. */
  private readonly blocks = new Map<string, IIPBlock>();
  /** Per Instance and network, its leases: more than one only after a race. */
  private readonly byInstance = new Map<string, Map<string, AddressLease[]>>();
  /** Addresses held per network, and those being written for an allocation right now. */
  private readonly used = new Map<string, Set<number>>();
  private readonly reserved = new Map<string, Set<number>>();
  private readonly cursor = new Map<string, number>();
  /** Allocations under way per network, checked usable and not yet answered (deletion waits). */
  private readonly inFlight = new Map<string, number>();
  private readonly freedListeners: (() => void)[] = [];
  /** Blocks seen deleted, as they last were: a late event of that version must not revive them. */
  private readonly gone = new Map<string, IIPBlock>();

  constructor(
    kc: KubeConfig,
    private readonly networks: Informer<INetwork>,
    blocks: Informer<IIPBlock>,
  ) {
    this.writer = new BlockWriter(kc, {
      block: (name) => this.blocks.get(name),
      observe: (name, block) => this.observe(name, block),
    });
    blocks.on((b, type) => {
      const name = b.metadata?.name as string;
      // The watch trails our own writes: an event older than the view would undo them in it.
      if ((versionOrder(b, this.blocks.get(name)) ?? 0) < 0) return;
      // Nor may a version from before a deletion the view has seen bring the block back.
      if (type !== 'delete' && (versionOrder(b, this.gone.get(name)) ?? 1) <= 0) return;
      this.observe(name, type === 'delete' ? undefined : b);
    });
  }

  /** Called whenever an address is freed: Instances waiting for one may try again. */
  onFreed(listener: () => void): void {
    this.freedListeners.push(listener);
  }

  /** Addresses on the network being allocated right now: not in any view yet. */
  creating(network: string): number {
    return this.inFlight.get(network) ?? 0;
  }

  allocationsOf(uid: string): AddressLease[] {
    return [...(this.byInstance.get(uid)?.values() ?? [])].flat();
  }

  /** Every address held, by whom. */
  leases(): AddressLease[] {
    return [...this.blocks.values()].flatMap(leasesOf);
  }

  /** Addresses held for a node after their Instance was deleted while the node was down. */
  held(): AddressLease[] {
    return this.leases().filter((l) => l.heldForNode);
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
    if (mine) return { interface: toInterface(net, mine.ip) };
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
    return kept && 'interface' in result ? { interface: toInterface(net, kept.ip) } : result;
  }

  /**
   * The Instance's address on the network; should a race have given it two, the lowest is kept
   * and the others released, so none is left that nobody tracks.
   */
  private async heldBy(uid: string, network: string): Promise<AddressLease | undefined> {
    const all = [...(this.byInstance.get(uid)?.get(network) ?? [])].sort(
      (a, b) => ipToNumber(a.ip) - ipToNumber(b.ip),
    );
    await Promise.all(all.slice(1).map((extra) => this.remove(extra)));
    return all[0];
  }

  /** Records an address held elsewhere before (an earlier operator's IPAllocation). */
  async adopt(lease: AddressLease): Promise<'adopted' | 'heldByAnother' | 'networkGone'> {
    const net = this.networks.get(lease.network);
    if (!net) return 'networkGone';
    const ref = blockOf(net, ipToNumber(lease.ip));
    return (await this.writer.edit(ref, { kind: 'add', lease })) ? 'adopted' : 'heldByAnother';
  }

  /** Keeps the Instance's addresses from being handed out again until the node is back. */
  async holdForNode(uid: string, node: string): Promise<void> {
    await Promise.all(
      this.allocationsOf(uid).map((l) => this.edit(l, { kind: 'hold', ip: l.ip, uid, node })),
    );
  }

  /** Frees an address held for a node, once the caller judged the node back. */
  async releaseHeld(lease: AddressLease): Promise<void> {
    await this.remove(lease);
  }

  /** Releases every address the Instance holds, except those held for a node that is down. */
  async release(uid: string): Promise<void> {
    const free = this.allocationsOf(uid).filter((l) => !l.heldForNode);
    await Promise.all(free.map((l) => this.remove(l)));
  }

  private remove(lease: AddressLease): Promise<boolean> {
    return this.edit(lease, { kind: 'remove', ip: lease.ip, uid: lease.instance.uid });
  }

  private edit(lease: AddressLease, edit: BlockEdit): Promise<boolean> {
    const net = this.networks.get(lease.network);
    const ref = net
      ? blockOf(net, ipToNumber(lease.ip))
      : this.blockHolding(lease.network, lease.ip);
    return ref ? this.writer.edit(ref, edit) : Promise.resolve(true);
  }

  /** The block of a lease whose Network is gone: found by what the blocks list. */
  private blockHolding(network: string, ip: string) {
    for (const [name, b] of this.blocks)
      if (b.spec.network === network && b.spec.addresses?.some((a) => a.ip === ip))
        return { name, network, cidr: b.spec.cidr };
    return undefined;
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
    if (await this.record(inst, net, n)) return { interface: toInterface(net, ip) };
    return inUse(name, ip, this.holderOf(net, n));
  }

  private async allocateNext(inst: InstanceObject, net: INetwork): Promise<Allocation> {
    const name = net.metadata?.name as string;
    const ranges = allocationRanges(net.spec);
    for (const n of this.candidates(name, ranges)) {
      this.cursor.set(name, n + 1);
      if (await this.record(inst, net, n)) return { interface: toInterface(net, numberToIp(n)) };
    }
    return {
      reason: 'NetworkExhausted',
      message: `Network ${name} has no free address left in its allocation pools; widen them or delete Instances`,
    };
  }

  /** Writes the address into its block for the Instance; false when another holds it. */
  private async record(inst: InstanceObject, net: INetwork, n: number): Promise<boolean> {
    const network = net.metadata?.name as string;
    const { name, namespace, uid } = inst.metadata;
    const ip = numberToIp(n);
    // Reserved until answered, so that concurrent allocations try other addresses.
    const reserved = this.setOf(this.reserved, network).add(n);
    const lease = { network, ip, mac: macFor(ip), instance: { namespace, name, uid } };
    try {
      return await this.writer.edit(blockOf(net, n), { kind: 'add', lease });
    } finally {
      reserved.delete(n);
    }
  }

  private holderOf(net: INetwork, n: number): AddressLease | undefined {
    const block = this.blocks.get(blockOf(net, n).name);
    return leasesOf(block).find((l) => l.ip === numberToIp(n));
  }

  /** Free-looking addresses, starting after the last one handed out, wrapping around once. */
  private *candidates(network: string, ranges: Range[]): Generator<number> {
    const used = this.setOf(this.used, network);
    const reserved = this.setOf(this.reserved, network);
    const start = this.cursor.get(network) ?? 0;
    const all = (from: number, to: number) =>
      ranges.flatMap((r) => {
        const lo = Math.max(r.start, from);
        const hi = Math.min(r.end, to);
        return lo <= hi ? [[lo, hi] as const] : [];
      });
    for (const [lo, hi] of [...all(start, Infinity), ...all(0, start - 1)]) {
      for (let n = lo; n <= hi; n++) if (!used.has(n) && !reserved.has(n)) yield n;
    }
  }

  private setOf(sets: Map<string, Set<number>>, network: string): Set<number> {
    let s = sets.get(network);
    if (!s) {
      s = new Set();
      sets.set(network, s);
    }
    return s;
  }

  /** A block as read or written: the indexes follow its list. */
  private observe(name: string, block: IIPBlock | undefined): void {
    const previous = this.blocks.get(name);
    const before = leasesOf(previous);
    if (block) {
      this.blocks.set(name, block);
      this.gone.delete(name);
    } else {
      this.blocks.delete(name);
      if (previous) this.gone.set(name, previous);
    }
    const after = leasesOf(block);
    for (const l of before) this.unindex(l);
    for (const l of after) this.index(l);
    const kept = new Set(after.map((l) => `${l.ip}/${l.instance.uid}`));
    if (before.some((l) => !kept.has(`${l.ip}/${l.instance.uid}`)))
      for (const listener of this.freedListeners) listener();
  }

  private index(l: AddressLease): void {
    this.setOf(this.used, l.network).add(ipToNumber(l.ip));
    const uid = l.instance.uid;
    const mine = this.byInstance.get(uid) ?? new Map<string, AddressLease[]>();
    const others = (mine.get(l.network) ?? []).filter((o) => o.ip !== l.ip);
    mine.set(l.network, [...others, l]);
    this.byInstance.set(uid, mine);
  }

  private unindex(l: AddressLease): void {
    this.used.get(l.network)?.delete(ipToNumber(l.ip));
    const mine = this.byInstance.get(l.instance.uid);
    const rest = (mine?.get(l.network) ?? []).filter((o) => o.ip !== l.ip);
    if (rest.length) mine?.set(l.network, rest);
    else mine?.delete(l.network);
    if (mine?.size === 0) this.byInstance.delete(l.instance.uid);
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

function inUse(network: string, ip: string, holder: AddressLease | undefined): Allocation {
  const i = holder?.instance;
  const node = holder?.heldForNode;
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

/**
 * How version `a` of a block compares with `b` (negative: older); undefined when either is
 * missing or not a number. resourceVersions are etcd revisions, compared as numbers (as the
 * scheduler's assume cache does).
 */
function versionOrder(a: IIPBlock, b: IIPBlock | undefined): number | undefined {
  const [x, y] = [a.metadata?.resourceVersion, b?.metadata?.resourceVersion].map(Number);
  return Number.isSafeInteger(x) && Number.isSafeInteger(y)
    ? (x as number) - (y as number)
    : undefined;
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
