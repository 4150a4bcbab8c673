// Wires informers to the work queue. Informer handlers only enqueue: an Instance is synced
// when it changes (also when it is deleted, to release what it held); Instances that wait are
// synced again when something they wait for changes, coalesced so a storm of heartbeats costs
// one pass and only the waits that such a change can end are woken.
import type { KubeConfig } from '@kubernetes/client-node';
import { EventRecorder, objectKey, Patcher, WorkQueue, type Logger } from '@kova/controller-kit';
import {
  interfacesAllocated,
  networkUsable,
  OPERATOR_FIELD_MANAGER,
  type INetwork,
  type InstanceObject,
} from '@kova/crds';
import type { Registry } from 'prom-client';
import { ClusterState } from '../cluster-state.js';
import type { OperatorConfig } from '../config.js';
import { AddressAllocator } from '../ipam/allocator.js';
import { operatorMetrics } from '../metrics.js';
import { Housekeeping } from './housekeeping.js';
import { InstanceReconciler } from './reconciler.js';
import type { ReconcilerDeps } from './sync-context.js';

const KICK_DELAY_MS = 250;

/** What kind of change can end which kind of wait. */
type Wake = 'capacity' | 'addresses';

export class InstanceController {
  readonly state: ClusterState;
  /** One queue per leadership term: a term's end shuts its queue down, the next starts afresh. */
  private queue: WorkQueue | undefined;
  private readonly reconciler: InstanceReconciler;
  readonly allocator: AddressAllocator;
  private readonly housekeeping: Housekeeping;
  private readonly kicks = new Set<Wake>();
  private kickTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  /** Per Network, what a waiting Instance cares about: whether it hands out addresses. */
  private readonly networkViews = new Map<string, string>();

  constructor(
    kc: KubeConfig,
    private readonly config: OperatorConfig,
    private readonly logger: Logger,
    private readonly registry: Registry,
    overrides: Partial<Pick<ReconcilerDeps, 'patcher'>> = {},
  ) {
    this.state = new ClusterState(kc, config, logger, registry);
    this.allocator = new AddressAllocator(kc, this.state.networks, this.state.blocks);
    this.housekeeping = new Housekeeping(this.state, this.allocator, config, logger);
    this.reconciler = new InstanceReconciler({
      state: this.state,
      allocator: this.allocator,
      patcher: new Patcher(kc, OPERATOR_FIELD_MANAGER),
      events: new EventRecorder(kc, 'kova-operator', logger),
      config,
      metrics: operatorMetrics(registry, this.state),
      logger,
      observedActive: new Set(),
      ...overrides,
    });
    const s = this.state;
    s.instances.on((inst, type) => this.onInstance(inst, type));
    // Heartbeats wake waiting Instances only when a hypervisor comes back, not every renewal.
    s.onHostUp(() => this.kick('capacity'));
    const capacity = [s.hypervisors, s.flavors, s.images, s.serverGroups, s.nodes];
    for (const informer of capacity) informer?.on(() => this.kick('capacity'));
    s.networks.on((net, type) => this.onNetwork(net, type));
    this.allocator.onFreed(() => this.kickAll());
  }

  /** Starts watching (usable for readiness before leadership). */
  async startInformers(): Promise<void> {
    await this.state.start();
  }

  /** True while a term's queue is being worked (the liveness of a leader). */
  get reconciling(): boolean {
    return this.queue !== undefined;
  }

  /**
   * Runs the reconcile loop until the signal aborts (leadership lost or shutdown), and returns
   * only after every sync of this term has finished, so the next term never overlaps it.
   */
  async lead(signal: AbortSignal): Promise<void> {
    const queue = new WorkQueue({
      name: 'instances',
      logger: this.logger,
      registry: this.registry,
    });
    this.state.rebuild();
    this.queue = queue;
    for (const inst of this.state.instances.list()) queue.add(objectKey(inst));
    this.running = queue.runUntil(signal, (key) => this.reconciler.sync(key), this.config.workers);
    const chores = this.housekeeping.run(signal);
    await Promise.all([this.running, chores]);
    if (this.queue === queue) this.queue = undefined;
  }

  async stop(): Promise<void> {
    clearTimeout(this.kickTimer);
    this.queue?.shutDown();
    await this.running;
    await this.state.stop();
  }

  private onInstance(inst: InstanceObject, type: string): void {
    this.queue?.add(objectKey(inst));
    if (type === 'delete') this.kickAll();
  }

  /**
   * A Network that appears, goes, changes its spec or becomes usable (or not) wakes the waiting
   * Instances; its status following usage (allocated, nodes) does not.
   */
  private onNetwork(net: INetwork, type: string): void {
    const name = net.metadata?.name as string;
    const m = net.metadata;
    const view = JSON.stringify([m?.generation, !!m?.deletionTimestamp, networkUsable(net)]);
    const before = this.networkViews.get(name);
    if (type === 'delete') this.networkViews.delete(name);
    else this.networkViews.set(name, view);
    if (type !== 'update' || before !== view) this.kickAll();
  }

  private kickAll(): void {
    this.kick('capacity');
    this.kick('addresses');
  }

  private kick(wake: Wake): void {
    this.kicks.add(wake);
    if (this.kickTimer) return;
    this.kickTimer = setTimeout(() => {
      this.kickTimer = undefined;
      const wakes = new Set(this.kicks);
      this.kicks.clear();
      for (const inst of this.state.instances.list()) {
        const waits = waitsFor(inst);
        if (waits && wakes.has(waits)) this.queue?.add(objectKey(inst));
      }
    }, KICK_DELAY_MS);
  }
}

function waitsFor(inst: InstanceObject): Wake | undefined {
  const phase = inst.status?.phase;
  if (!phase || phase === 'Scheduling') return 'capacity';
  if (phase === 'Networking' && !interfacesAllocated(inst)) return 'addresses';
  return undefined;
}
