// Address allocation arbitrated by the API server: an address belongs to whoever created the
// IPAllocation named after it. Creating an existing name fails with 409, so two allocators —
// even two operator replicas that both believe they lead — can never hand out one address twice.
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { apiStatus, type Informer } from '@kova/controller-kit';
import {
  API_VERSION,
  INSTANCE_UID_LABEL,
  NETWORK_LABEL,
  PLURAL,
  GROUP,
  VERSION,
  type IIPAllocation,
  type INetwork,
  type Interface,
} from '@kova/crds';
import type { Instance } from '../cluster-state.js';
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

const allocationName = (network: string, ip: string) => `${network}.${ip.replace(/\./g, '-')}`;
const api = { group: GROUP, version: VERSION, plural: PLURAL.IPAllocation };

export class AddressAllocator {
  private readonly custom: CustomObjectsApi;
  /** Addresses in use per network: the informer's view plus our own creations it has not shown yet. */
  private readonly used = new Map<string, Set<number>>();
  private readonly byInstance = new Map<string, Map<string, IIPAllocation>>();
  private readonly cursor = new Map<string, number>();

  constructor(
    kc: KubeConfig,
    private readonly networks: Informer<INetwork>,
    allocations: Informer<IIPAllocation>,
  ) {
    this.custom = kc.makeApiClient(CustomObjectsApi);
    allocations.on((a, type) => (type === 'delete' ? this.forget(a) : this.remember(a)));
  }

  /** Number of addresses allocated on the network. */
  allocatedCount(network: string): number {
    return this.used.get(network)?.size ?? 0;
  }

  allocationsOf(uid: string): IIPAllocation[] {
    return [...(this.byInstance.get(uid)?.values() ?? [])];
  }

  async allocate(inst: Instance, req: NetworkRequest): Promise<Allocation> {
    const net = this.networks.get(req.network);
    if (!net) {
      return {
        reason: 'NetworkNotFound',
        message: `Network ${req.network} does not exist; create it or fix spec.networks`,
      };
    }
    const held = this.byInstance.get(inst.metadata.uid)?.get(req.network);
    if (held) return { interface: toInterface(net, held.spec.ip) };
    return req.fixedIP ? this.allocateFixed(inst, net, req.fixedIP) : this.allocateNext(inst, net);
  }

  /** Releases every address the Instance holds. */
  async release(uid: string): Promise<void> {
    for (const a of this.allocationsOf(uid)) {
      const name = a.metadata?.name as string;
      await this.custom.deleteClusterCustomObject({ ...api, name }).catch((err) => {
        if (apiStatus(err) !== 404) throw err;
      });
      this.forget(a);
    }
  }

  private async allocateFixed(inst: Instance, net: INetwork, ip: string): Promise<Allocation> {
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
    const created = await this.tryCreate(inst, name, ip);
    if (created) return { interface: toInterface(net, ip) };
    const holder = await this.holderOf(name, ip);
    if (holder?.uid === inst.metadata.uid) return { interface: toInterface(net, ip) };
    return {
      reason: 'FixedIPInUse',
      message: `fixed IP ${ip} on Network ${name} is held by Instance ${holder?.namespace}/${holder?.name}`,
    };
  }

  private async allocateNext(inst: Instance, net: INetwork): Promise<Allocation> {
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

  private async tryCreate(inst: Instance, network: string, ip: string): Promise<boolean> {
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

  private async holderOf(
    network: string,
    ip: string,
  ): Promise<IIPAllocation['spec']['instance'] | undefined> {
    const a = (await this.custom
      .getClusterCustomObject({ ...api, name: allocationName(network, ip) })
      .catch(() => undefined)) as IIPAllocation | undefined;
    if (a) this.remember(a);
    return a?.spec.instance;
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
    this.usedSet(a.spec.network).add(ipToNumber(a.spec.ip));
    const uid = a.spec.instance.uid;
    const mine = this.byInstance.get(uid) ?? new Map<string, IIPAllocation>();
    mine.set(a.spec.network, a);
    this.byInstance.set(uid, mine);
  }

  private forget(a: IIPAllocation): void {
    this.used.get(a.spec.network)?.delete(ipToNumber(a.spec.ip));
    const mine = this.byInstance.get(a.spec.instance.uid);
    mine?.delete(a.spec.network);
    if (mine?.size === 0) this.byInstance.delete(a.spec.instance.uid);
  }
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
