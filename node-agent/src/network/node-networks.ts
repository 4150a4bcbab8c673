// The node's side of Networks: everything a managed Network needs on this node (bridge,
// distributed gateway, VXLAN device and its flooding list, kova's nftables rules), made when an
// Instance is plugged and kept matching the cluster by a sync on every Network or Instance
// change and every resync. What no Instance here uses any more is removed; nothing is kept in
// memory that a restarted agent could not rebuild from the Networks and its Instances.
import type { Informer, Logger } from '@kova/controller-kit';
import { networkRefusal, type IInstance, type INetwork, type Interface } from '@kova/crds';
import { writeFile } from 'node:fs/promises';
import { BuildFault } from '../errors.js';
import { run } from '../host/exec.js';
import {
  ensureBridge,
  ensureVxlan,
  linkExists,
  ownedBridges,
  removeUnusedBridge,
  syncFlooding,
  type NetworkLinks,
} from './links.js';
import { gatewayMac, tapName, vxlanName, VXLAN_OVERHEAD } from './names.js';
import { renderRuleset, type GuardedNetwork, type GuestNic } from './ruleset.js';
import type { TunnelEndpoint } from './tunnel.js';

export interface Nic extends Interface {
  bridge: string;
  tap: string;
  mtu: number;
}

export interface NodeNetworksOptions {
  nodeName: string;
  tunnel: TunnelEndpoint | undefined;
  networks: Pick<Informer<INetwork>, 'get'>;
  /** Names of the Networks the Instances bound to this node have addresses on. */
  inUse: () => Set<string>;
  /** The NICs of the Instances bound to this node, each held to its MAC and address. */
  nics: () => GuestNic[];
  logger: Logger;
}

export const DEFAULT_MTU = 1450;
const SYNC_DELAY_MS = 200;

export class NodeNetworks {
  /** Host network changes run one at a time: two plugs would both find a link missing. */
  private serial: Promise<unknown> = Promise.resolve();
  private appliedRules: string | undefined;
  private syncTimer: NodeJS.Timeout | undefined;

  constructor(private readonly o: NodeNetworksOptions) {}

  /** The build step: brings up each Network of the Instance and names its taps. */
  plug(
    uid: string,
    interfaces: Interface[],
    networkOf: (name: string) => INetwork | undefined,
  ): Promise<Nic[]> {
    return this.serialized(async () => {
      const nics: Nic[] = [];
      const plugged = new Map(this.wanted().map((n) => [n.metadata?.name, n]));
      for (const [i, iface] of interfaces.entries()) {
        const net = networkOf(iface.network);
        if (!net)
          throw new BuildFault('NetworkNotFound', `Network ${iface.network} does not exist`, false);
        await this.bringUp(net);
        if (net.spec.managed !== false) plugged.set(net.metadata?.name, net);
        const mtu = net.spec.mtu ?? DEFAULT_MTU;
        nics.push({ ...iface, bridge: net.spec.bridge, tap: tapName(uid, i), mtu });
      }
      await this.applyRules([...plugged.values()]);
      return nics;
    });
  }

  /** Soon, once for a burst of changes: make the node match the Networks and Instances. */
  kick(): void {
    if (this.syncTimer) return;
    this.syncTimer = setTimeout(() => {
      this.syncTimer = undefined;
      this.sync().catch((error: Error) =>
        this.o.logger.warn('node network sync failed', { error }),
      );
    }, SYNC_DELAY_MS);
  }

  stop(): void {
    clearTimeout(this.syncTimer);
  }

  /** Brings up what is in use, removes what is not, and rewrites the rules (repairing them). */
  sync(): Promise<void> {
    return this.serialized(async () => {
      const wanted = this.wanted();
      for (const net of wanted)
        await this.bringUp(net).catch((error: Error) =>
          this.o.logger.warn('could not bring up a Network on this node', {
            network: net.metadata?.name,
            error,
          }),
        );
      await this.removeUnused(new Set(wanted.map((n) => n.metadata?.name as string)));
      await this.applyRules(wanted);
    });
  }

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.serial.then(fn);
    this.serial = next.catch(() => undefined);
    return next;
  }

  /**
   * The managed, usable Networks this node's Instances are on. An Instance being built is among
   * them from its plug on (the agent builds only Instances its informer shows, and plug and sync
   * run one at a time), so a sync cannot remove a bridge a build has just plugged.
   */
  private wanted(): INetwork[] {
    return [...this.o.inUse()]
      .map((name) => this.o.networks.get(name))
      .filter((n): n is INetwork => !!n && n.spec.managed !== false && !refusal(n));
  }

  private async bringUp(net: INetwork): Promise<void> {
    const name = net.metadata?.name as string;
    const { bridge } = net.spec;
    if (net.spec.managed === false) {
      if (await linkExists(bridge)) return;
      throw new BuildFault(
        'BridgeMissing',
        `bridge ${bridge} of unmanaged Network ${name} does not exist on this node; create it or set managed: true`,
        true,
      );
    }
    const links = this.linksOf(net);
    await ensureBridge(links).catch((err: Error) => {
      if (err instanceof BuildFault) throw err;
      throw new BuildFault(
        'BridgeCreateFailed',
        `could not set up bridge ${bridge}: ${err.message}`,
        true,
        {
          cause: err,
        },
      );
    });
    if (this.o.tunnel && links.vni !== undefined) await this.bringUpOverlay(net, links.vni, links);
  }

  private linksOf(net: INetwork): NetworkLinks {
    const name = net.metadata?.name as string;
    const refused = refusal(net);
    if (refused) throw new BuildFault('NetworkRefused', refused, false);
    // Without a VNI yet the bridge works on this node alone; the sync adds the overlay later.
    const vni = net.status?.vni;
    const mtu = net.spec.mtu ?? DEFAULT_MTU;
    if (this.o.tunnel && mtu + VXLAN_OVERHEAD > this.o.tunnel.mtu)
      throw new BuildFault(
        'MTUTooLarge',
        `Network ${name} has mtu ${mtu}, but its VXLAN overlay needs ${mtu + VXLAN_OVERHEAD} on this node's underlay (${this.o.tunnel.address}, MTU ${this.o.tunnel.mtu}); set spec.mtu to ${this.o.tunnel.mtu - VXLAN_OVERHEAD} or less, or raise the underlay MTU`,
        false,
      );
    const [, prefix] = net.spec.cidr.split('/');
    return {
      network: name,
      bridge: net.spec.bridge,
      gateway: net.spec.gateway,
      prefix: Number(prefix),
      mtu,
      vni,
    };
  }

  private async bringUpOverlay(net: INetwork, vni: number, links: NetworkLinks): Promise<void> {
    const tunnel = this.o.tunnel as TunnelEndpoint;
    const peers = (net.status?.nodes ?? [])
      .filter(
        (n) => n.name !== this.o.nodeName && n.tunnelAddress && n.tunnelAddress !== tunnel.address,
      )
      .map((n) => n.tunnelAddress as string);
    try {
      await ensureVxlan({ ...links, vni }, tunnel.address);
      await syncFlooding(vni, peers);
    } catch (err) {
      throw new BuildFault(
        'OverlayFailed',
        `could not set up the VXLAN overlay ${vxlanName(vni)} of Network ${links.network} (the vxlan kernel module must be available): ${(err as Error).message}`,
        true,
        { cause: err },
      );
    }
  }

  /**
   * kova's nftables tables, rewritten in one transaction when they would change or are gone (a
   * node reboot, a flushed ruleset); never needlessly (each `nft -f` is a process and a ruleset
   * swap in the kernel).
   */
  private async applyRules(nets: INetwork[]): Promise<void> {
    try {
      const guarded = [...nets.map((n) => this.guarded(n)), ...(await this.orphanBridges(nets))];
      const nics = this.o.nics();
      const text = renderRuleset(guarded, nics);
      const wanted = guarded.length > 0 || nics.length > 0;
      if (text === this.appliedRules && (await this.tablesPresent(wanted))) return;
      if (guarded.some((n) => n.egress)) await writeFile('/proc/sys/net/ipv4/ip_forward', '1');
      await run('nft', ['-f', '-'], { input: text });
      this.appliedRules = text;
    } catch (err) {
      throw new BuildFault(
        'FirewallFailed',
        `could not apply kova's nftables rules on this node (nft and the nf_tables kernel module must work there): ${(err as Error).message}`,
        true,
        { cause: err },
      );
    }
  }

  /**
   * Bridges kova made that are not among `nets` but still exist (only one with guests survives
   * a sync): they keep the guard and isolation whatever became of their Network (refused,
   * renamed, deleted, its Instances rebound elsewhere); only egress goes.
   */
  private async orphanBridges(nets: INetwork[]): Promise<GuardedNetwork[]> {
    const covered = new Set(nets.map((n) => n.spec.bridge));
    return [...(await ownedBridges())]
      .filter(([, bridge]) => !covered.has(bridge))
      .map(([name, bridge]) => ({ name, bridge, cidr: '', gateway: '', egress: false }));
  }

  /** Whether kova's tables are there as last applied (a read: it changes nothing). */
  private async tablesPresent(wanted: boolean): Promise<boolean> {
    const tables = await run('nft', ['list', 'tables']);
    const present = ['inet', 'bridge'].map((f) =>
      new RegExp(`^table ${f} kova$`, 'm').test(tables),
    );
    return present.every((p) => p === wanted);
  }

  private guarded(net: INetwork): GuardedNetwork {
    const vni = net.status?.vni;
    return {
      name: net.metadata?.name as string,
      bridge: net.spec.bridge,
      cidr: net.spec.cidr,
      gateway: net.spec.gateway,
      egress: net.spec.egress === true,
      overlay:
        this.o.tunnel && vni !== undefined
          ? { device: vxlanName(vni), gatewayMac: gatewayMac(vni) }
          : undefined,
    };
  }

  private async removeUnused(wanted: Set<string>): Promise<void> {
    for (const [network, bridge] of await ownedBridges()) {
      if (wanted.has(network)) continue;
      if (await removeUnusedBridge(bridge))
        this.o.logger.info('removed the links of a Network no Instance here uses', {
          network,
          bridge,
        });
    }
  }
}

/** Why the operator refused this Network, if it did: such a Network is never built. */
const refusal = (net: INetwork) => networkRefusal(net.metadata?.name as string, net);

/** The NICs of the given Instances, by the tap each gets. */
export function guestNics(instances: readonly IInstance[]): GuestNic[] {
  return instances.flatMap((i) =>
    (i.status?.interfaces ?? []).map((f, n) => ({
      tap: tapName(i.metadata?.uid as string, n),
      mac: f.mac,
      ip: f.ip,
    })),
  );
}

/** The Networks the given Instances have addresses on. */
export function networksInUse(instances: readonly IInstance[]): Set<string> {
  return new Set(instances.flatMap((i) => (i.status?.interfaces ?? []).map((f) => f.network)));
}
