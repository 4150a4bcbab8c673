// Wires the informers to the Network work queue. Handlers only enqueue: a Network is synced when
// it changes (its neighbours too when what they are judged against changes: it appears or goes,
// its cidr, bridge or VNI changes). Its usage is synced after a delay, so that a burst of
// bindings costs a few status writes per Network, not one per binding (the queue keeps one
// pending delay per key, the sooner winning): a short one when its set of nodes or their tunnel
// endpoints change (agents build the overlay from them), a longer one when only its address
// counts do. One worker: VNIs are handed out one Network at a time, and only by the leader.
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import {
  EventRecorder,
  Patcher,
  WorkQueue,
  type InformerEvent,
  type Logger,
} from '@kova/controller-kit';
import {
  GROUP,
  NETWORK_LABEL,
  OPERATOR_FIELD_MANAGER,
  PLURAL,
  VERSION,
  type IIPBlock,
  type INetwork,
} from '@kova/crds';
import type { Registry } from 'prom-client';
import type { ClusterState } from '../cluster-state.js';
import type { OperatorConfig } from '../config.js';
import { leasesOf } from '../ipam/blocks.js';
import { networkMetrics } from './metrics.js';
import { NetworkReconciler, type NetworkApi, type NetworkDeps } from './reconciler.js';
import { NetworkUsage } from './usage.js';

/** The informers the controller reads, as ClusterState has them. */
export type NetworkInformers = Pick<
  ClusterState,
  'networks' | 'instances' | 'blocks' | 'hypervisors'
>;

export class NetworkController {
  readonly usage = new NetworkUsage();
  private readonly reconciler: NetworkReconciler;
  /** One queue per leadership term, as for Instances. */
  private queue: WorkQueue | undefined;
  private running: Promise<void> | undefined;
  /** Per Network, what its neighbours are judged against, and what its own sync acts on. */
  private readonly seen = new Map<string, { neighbours: string; own: string }>();

  constructor(
    kc: KubeConfig,
    private readonly state: NetworkInformers,
    allocator: NetworkDeps['allocator'],
    private readonly config: OperatorConfig,
    private readonly logger: Logger,
    private readonly registry: Registry,
    overrides: Partial<Pick<NetworkDeps, 'patcher' | 'api' | 'events'>> = {},
  ) {
    this.reconciler = new NetworkReconciler({
      networks: state.networks,
      usage: this.usage,
      allocator,
      api: overrides.api ?? apiReads(kc),
      patcher: overrides.patcher ?? new Patcher(kc, OPERATOR_FIELD_MANAGER),
      events: overrides.events ?? new EventRecorder(kc, 'kova-operator', logger),
      config,
      metrics: networkMetrics(registry, state.networks, this.usage),
      logger,
    });
    state.networks.on((net, type) => this.onNetwork(net, type));
    const nodes = (names: string[]) => this.later(names, config.networkNodesDelayMs);
    state.instances.on((inst, type) => nodes(this.usage.observeInstance(inst, type)));
    state.hypervisors.on((hv, type) => nodes(this.usage.observeHypervisor(hv, type)));
    state.blocks.on((b, type) => {
      for (const name of this.usage.observeBlock(b, type)) {
        // A Network being deleted waits for its last address: that is news, not a count.
        const deleting = !!state.networks.get(name)?.metadata?.deletionTimestamp;
        this.later([name], deleting ? config.networkNodesDelayMs : config.networkCountsDelayMs);
      }
    });
  }

  get reconciling(): boolean {
    return this.queue !== undefined;
  }

  /** Syncs Networks until the signal aborts; returns once every sync of this term has finished. */
  async lead(signal: AbortSignal): Promise<void> {
    const queue = new WorkQueue({
      name: 'networks',
      logger: this.logger,
      registry: this.registry,
    });
    this.queue = queue;
    for (const net of this.state.networks.list()) queue.add(net.metadata?.name as string);
    this.running = queue.runUntil(signal, (name) => this.reconciler.sync(name), 1);
    await this.running;
    if (this.queue === queue) this.queue = undefined;
  }

  async stop(): Promise<void> {
    this.queue?.shutDown();
    await this.running;
  }

  private onNetwork(net: INetwork, type: InformerEvent): void {
    const name = net.metadata?.name as string;
    const before = this.seen.get(name);
    const now = { neighbours: neighbourView(net), own: ownView(net) };
    if (type === 'delete') this.seen.delete(name);
    else this.seen.set(name, now);
    if (type !== 'update' || before?.neighbours !== now.neighbours) {
      for (const other of this.state.networks.list()) {
        const n = other.metadata?.name as string;
        if (n !== name) this.queue?.add(n);
      }
    }
    // Its own status written (ours, mostly): looked at with the counts, never in a tight loop.
    if (type === 'update' && before?.own === now.own && before.neighbours === now.neighbours)
      this.later([name], this.config.networkCountsDelayMs);
    else this.queue?.add(name);
  }

  /** Syncs the Networks after the delay; a sooner one already pending wins (the queue's rule). */
  private later(networks: string[], delayMs: number): void {
    for (const n of networks) this.queue?.addAfter(n, delayMs);
  }
}

/** What another Network's verdict depends on. */
function neighbourView(net: INetwork): string {
  const m = net.metadata;
  return JSON.stringify([m?.creationTimestamp, net.spec.cidr, net.spec.bridge, net.status?.vni]);
}

/** What the Network's own sync acts on, besides its usage. */
function ownView(net: INetwork): string {
  const m = net.metadata;
  return JSON.stringify([m?.generation, m?.deletionTimestamp, m?.finalizers]);
}

function apiReads(kc: KubeConfig): NetworkApi {
  const custom = kc.makeApiClient(CustomObjectsApi);
  const api = { group: GROUP, version: VERSION };
  return {
    async listNetworks() {
      const list = await custom.listClusterCustomObject({ ...api, plural: PLURAL.Network });
      return (list as { items: INetwork[] }).items;
    },
    async listLeases(network) {
      const list = await custom.listClusterCustomObject({
        ...api,
        plural: PLURAL.IPBlock,
        labelSelector: `${NETWORK_LABEL}=${network}`,
      });
      return (list as { items: IIPBlock[] }).items.flatMap(leasesOf);
    },
  };
}
