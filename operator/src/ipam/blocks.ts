// Addresses are recorded in IPBlocks: one object per block of a Network (64 addresses, or the
// whole Network when it is smaller), listing who holds which address. This module is the
// blocks' geometry and the pure edit of a block's list; block-writer.ts writes them.
import type { IIPBlock, INetwork } from '@kova/crds';
import { ipToNumber, numberToIp, parseCidr } from './ipv4.js';

/** Blocks hold 2^(32-26) = 64 addresses: a write stays small, and a burst fills one block. */
const BLOCK_PREFIX = 26;

export interface InstanceRef {
  namespace: string;
  name: string;
  uid: string;
}

/** One address held by one Instance, as a block lists it. */
export interface AddressLease {
  network: string;
  ip: string;
  mac: string;
  instance: InstanceRef;
  /** The Instance was deleted while this node was down: its VM may still run there. */
  heldForNode?: string;
}

export interface BlockRef {
  name: string;
  network: string;
  cidr: string;
}

/** The block of the Network that an address falls in. */
export function blockOf(net: INetwork, ip: number): BlockRef {
  const network = net.metadata?.name as string;
  const subnet = parseCidr(net.spec.cidr);
  const prefix = Math.max(subnet.prefix, BLOCK_PREFIX);
  const size = 2 ** (32 - prefix);
  const start = subnet.network + Math.floor((ip - subnet.network) / size) * size;
  const first = numberToIp(start);
  return { name: `${network}.${first.replace(/\./g, '-')}`, network, cidr: `${first}/${prefix}` };
}

export function leasesOf(block: IIPBlock | undefined): AddressLease[] {
  if (!block) return [];
  const network = block.spec.network;
  return (block.spec.addresses ?? []).map((a) => ({ network, ...a }));
}

/** A change to a block's list; each answers whether it took effect. */
export type BlockEdit =
  | { kind: 'add'; lease: AddressLease }
  | { kind: 'remove'; ip: string; uid: string }
  | { kind: 'hold'; ip: string; uid: string; node: string };

type Entry = NonNullable<IIPBlock['spec']['addresses']>[number];

/**
 * Applies the edits in order to a block's list. An add is refused (false) when another Instance
 * holds the address, and a no-op when the same one does; remove and hold touch only the entry
 * of that Instance.
 */
export function applyEdits(
  entries: readonly Entry[],
  edits: readonly BlockEdit[],
): { entries: Entry[]; results: boolean[]; changed: boolean } {
  const byIp = new Map(entries.map((e) => [e.ip, e]));
  let changed = false;
  const results = edits.map((edit) => {
    const held = byIp.get(edit.kind === 'add' ? edit.lease.ip : edit.ip);
    if (edit.kind === 'add') {
      if (held) return held.instance.uid === edit.lease.instance.uid;
      const { ip, mac, instance, heldForNode } = edit.lease;
      byIp.set(ip, { ip, mac, instance, ...(heldForNode ? { heldForNode } : {}) });
    } else {
      if (held?.instance.uid !== edit.uid) return true;
      if (edit.kind === 'remove') byIp.delete(edit.ip);
      else if (held.heldForNode === edit.node) return true;
      else byIp.set(edit.ip, { ...held, heldForNode: edit.node });
    }
    changed = true;
    return true;
  });
  const sorted = [...byIp.values()].sort((a, b) => ipToNumber(a.ip) - ipToNumber(b.ip));
  return { entries: sorted, results, changed };
}
