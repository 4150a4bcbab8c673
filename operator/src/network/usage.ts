// Who uses each Network, kept current from informer events so a Network's sync reads it without
// scanning every Instance: the addresses allocated on it (its IPBlocks' leases), the nodes that have
// Instances with an address on it (status.nodeName with status.interfaces) and each node's
// tunnel endpoint (its Hypervisor's status.tunnelAddress). Each observe call says which
// Networks the event changed, so only those are synced again.
import type { InformerEvent } from '@kova/controller-kit';
import { NETWORK_LABEL, type IHypervisor, type IIPBlock, type InstanceObject } from '@kova/crds';
import { leasesOf, type AddressLease } from '../ipam/blocks.js';

export interface NodeEntry {
  name: string;
  tunnelAddress?: string;
}

interface Placement {
  node: string;
  networks: string[];
}

export class NetworkUsage {
  /** Per Instance uid: its node and the Networks it has an address on there. */
  private readonly placements = new Map<string, Placement>();
  /** Per Network: Instances per node. */
  private readonly nodeCounts = new Map<string, Map<string, number>>();
  /** Per Network: the leases of each of its blocks, by block name. */
  private readonly allocations = new Map<string, Map<string, AddressLease[]>>();
  /** Per existing Hypervisor: its reported tunnel endpoint ('' when none yet). */
  private readonly tunnels = new Map<string, string>();

  /** Returns the Networks whose set of nodes changed (a node's first Instance came or its last went). */
  observeInstance(inst: InstanceObject, type: InformerEvent): string[] {
    const uid = inst.metadata.uid;
    const before = this.placements.get(uid);
    const after = type === 'delete' ? undefined : placementOf(inst);
    if (samePlacement(before, after)) return [];
    const changed = new Set<string>();
    if (before)
      for (const n of before.networks) if (this.count(n, before.node, -1) === 0) changed.add(n);
    if (after) {
      for (const n of after.networks) if (this.count(n, after.node, +1) === 1) changed.add(n);
      this.placements.set(uid, after);
    } else this.placements.delete(uid);
    return [...changed];
  }

  observeBlock(b: IIPBlock, type: InformerEvent): string[] {
    const network = b.metadata?.labels?.[NETWORK_LABEL] ?? b.spec.network;
    const name = b.metadata?.name as string;
    const mine = this.allocations.get(network) ?? new Map<string, AddressLease[]>();
    if (type === 'delete') mine.delete(name);
    else mine.set(name, leasesOf(b));
    if (mine.size) this.allocations.set(network, mine);
    else this.allocations.delete(network);
    return [network];
  }

  observeHypervisor(hv: IHypervisor, type: InformerEvent): string[] {
    const name = hv.metadata?.name as string;
    const before = this.tunnels.get(name);
    const after = type === 'delete' ? undefined : (hv.status?.tunnelAddress ?? '');
    if (before === after) return [];
    if (after === undefined) this.tunnels.delete(name);
    else this.tunnels.set(name, after);
    return [...this.nodeCounts].filter(([, nodes]) => nodes.has(name)).map(([net]) => net);
  }

  /** The nodes with Instances on the Network, sorted by name, each with its tunnel endpoint. */
  nodesOf(network: string): NodeEntry[] {
    return [...(this.nodeCounts.get(network)?.keys() ?? [])].sort().map((name) => {
      const tunnelAddress = this.tunnels.get(name);
      return tunnelAddress ? { name, tunnelAddress } : { name };
    });
  }

  allocationsOf(network: string): AddressLease[] {
    return [...(this.allocations.get(network)?.values() ?? [])].flat();
  }

  /** Every Network that has an address allocated or an Instance on a node. */
  networks(): string[] {
    return [...new Set([...this.allocations.keys(), ...this.nodeCounts.keys()])];
  }

  /** Counts an Instance on or off the node for the Network; returns how many are there now. */
  private count(network: string, node: string, by: number): number {
    const nodes = this.nodeCounts.get(network) ?? new Map<string, number>();
    const n = (nodes.get(node) ?? 0) + by;
    if (n > 0) nodes.set(node, n);
    else nodes.delete(node);
    if (nodes.size) this.nodeCounts.set(network, nodes);
    else this.nodeCounts.delete(network);
    return n;
  }
}

function placementOf(inst: InstanceObject): Placement | undefined {
  const node = inst.status?.nodeName;
  const networks = [...new Set((inst.status?.interfaces ?? []).map((i) => i.network))].sort();
  return node && networks.length ? { node, networks } : undefined;
}

function samePlacement(a: Placement | undefined, b: Placement | undefined): boolean {
  if (!a || !b) return a === b;
  return a.node === b.node && a.networks.join('\0') === b.networks.join('\0');
}
