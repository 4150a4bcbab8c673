// The rules of a Network's life, as pure functions: which of two Networks is the older (it keeps
// what both claim), whether a Network is refused for clashing with an older one, which VNI a
// new Network gets, and how the holders that keep a Network from going are named.
import { NetworkReason, type INetwork } from '@kova/crds';
import type { AddressLease } from '../ipam/blocks.js';
import { allocationRanges, contains, ipToNumber, parseCidr, rangeSize } from '../ipam/ipv4.js';

export interface Refusal {
  reason: string;
  message: string;
}

const nameOf = (n: INetwork) => n.metadata?.name as string;

/** Older first: by creationTimestamp, then by name (timestamps have whole seconds only). */
export function olderFirst(a: INetwork, b: INetwork): number {
  const ta = String(a.metadata?.creationTimestamp ?? '');
  const tb = String(b.metadata?.creationTimestamp ?? '');
  const byTime = ta === tb ? 0 : Date.parse(ta) - Date.parse(tb);
  if (byTime) return byTime;
  return nameOf(a) < nameOf(b) ? -1 : nameOf(a) > nameOf(b) ? 1 : 0;
}

export function cidrsOverlap(a: string, b: string): boolean {
  const x = parseCidr(a);
  const y = parseCidr(b);
  return x.network <= y.broadcast && y.network <= x.broadcast;
}

/**
 * Why the Network is refused: an older Network (whatever its own state, so that no verdict
 * depends on another's) has an overlapping CIDR, the same bridge, or the VNI this one has
 * recorded. The older one keeps working; undefined when nothing clashes.
 */
export function refusalOf(net: INetwork, all: readonly INetwork[]): Refusal | undefined {
  const older = all.filter((o) => nameOf(o) !== nameOf(net) && olderFirst(o, net) < 0);
  older.sort(olderFirst);
  const until = (what: string) =>
    `; it is refused (no VNI, no addresses) until that Network is deleted or ${what}`;
  const overlap = older.find((o) => cidrsOverlap(o.spec.cidr, net.spec.cidr));
  if (overlap)
    return {
      reason: NetworkReason.CIDROverlap,
      message:
        `cidr ${net.spec.cidr} overlaps Network ${nameOf(overlap)} (${overlap.spec.cidr}), ` +
        `which is older and keeps it` +
        until('this one is recreated with another cidr'),
    };
  const bridge = older.find((o) => o.spec.bridge === net.spec.bridge);
  if (bridge)
    return {
      reason: NetworkReason.BridgeConflict,
      message:
        `bridge ${net.spec.bridge} is already Network ${nameOf(bridge)}'s, which is older and ` +
        `keeps it` +
        until('spec.bridge is changed'),
    };
  const vni = net.status?.vni;
  const same = vni === undefined ? undefined : older.find((o) => o.status?.vni === vni);
  if (same)
    return {
      reason: NetworkReason.VNIConflict,
      message:
        `VNI ${vni} is also recorded on Network ${nameOf(same)}, which is older and keeps it; ` +
        `a recorded VNI is never changed, so this Network is refused until one of them is ` +
        `deleted`,
    };
  return undefined;
}

/** The lowest VNI in [min, max] that no other Network has; undefined when none is left. */
export function lowestFreeVni(used: ReadonlySet<number>, min: number, max: number) {
  for (let v = min; v <= max; v++) if (!used.has(v)) return v;
  return undefined;
}

/** Addresses of the Network allocated and still free in its allocation pools. */
export function addressCounts(net: INetwork, allocations: readonly AddressLease[]) {
  const ranges = allocationRanges(net.spec);
  const inPools = allocations.filter((a) => {
    const n = ipToNumber(a.ip);
    return ranges.some((r) => contains({ network: r.start, broadcast: r.end, prefix: 0 }, n));
  }).length;
  return {
    allocated: allocations.length,
    available: Math.max(0, rangeSize(ranges) - inPools),
  };
}

export interface Holders {
  count: number;
  /** "held by 3 Instances: ns/a, ns/b, ns/c", the first few named, then "and N more". */
  message: string;
}

const NAMED = 5;

/** The Instances holding addresses on the Network (also those held for a node that is down). */
export function holdersOf(allocations: readonly AddressLease[]): Holders {
  const byUid = new Map<string, string>();
  for (const a of allocations) {
    const i = a.instance;
    const node = a.heldForNode;
    const who = `${i.namespace}/${i.name}`;
    byUid.set(i.uid, node ? `${who} (deleted; held for node ${node})` : who);
  }
  const names = [...byUid.values()].sort();
  const count = names.length;
  const listed = names.slice(0, NAMED).join(', ');
  const more = count > NAMED ? ` and ${count - NAMED} more` : '';
  const noun = count === 1 ? 'Instance' : 'Instances';
  return { count, message: `held by ${count} ${noun}: ${listed}${more}` };
}
