// Wires informers to the work queue: an Instance is synced when it changes; Instances that
// wait (for capacity, a Flavor, an address) are synced again when anything they might wait
// for changes, coalesced so a storm of heartbeats costs one pass.
import type { KubeConfig } from '@kubernetes/client-node';
import {
  Applier,
  EventRecorder,
  objectKey,
  Patcher,
  WorkQueue,
  type Logger,
} from '@kova/controller-kit';
import { OPERATOR_FIELD_MANAGER } from '@kova/crds';
import type { Registry } from 'prom-client';
import { ClusterState, type Instance } from '../cluster-state.js';
import type { OperatorConfig } from '../config.js';
import { AddressAllocator } from '../ipam/allocator.js';
import { operatorMetrics } from '../metrics.js';
import { InstanceReconciler } from './reconciler.js';

const KICK_DELAY_MS = 250;

export class InstanceController {
  readonly state: ClusterState;
  /** One queue per leadership term: a term's end shuts its queue down, the next starts afresh. */
  private queue: WorkQueue | undefined;
  private readonly reconciler: InstanceReconciler;
  private readonly allocator: AddressAllocator;
  private kickTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    kc: KubeConfig,
    private readonly config: OperatorConfig,
    private readonly logger: Logger,
    private readonly registry: Registry,
  ) {
    this.state = new ClusterState(kc, config, logger, registry);
    this.allocator = new AddressAllocator(kc, this.state.networks, this.state.allocations);
    this.reconciler = new InstanceReconciler({
      state: this.state,
      allocator: this.allocator,
      applier: new Applier(kc, OPERATOR_FIELD_MANAGER),
      patcher: new Patcher(kc, OPERATOR_FIELD_MANAGER),
      events: new EventRecorder(kc, 'kova-operator', logger),
      config,
      metrics: operatorMetrics(registry, this.state),
      logger,
    });
    this.state.instances.on((inst, type) => this.onInstance(inst, type));
    for (const informer of [
      this.state.hypervisors,
      this.state.leases,
      this.state.flavors,
      this.state.images,
      this.state.networks,
      this.state.serverGroups,
      this.state.allocations,
      ...(this.state.nodes ? [this.state.nodes] : []),
    ]) {
      (informer as { on(h: () => void): void }).on(() => this.kickWaiting());
    }
  }

  /** Starts watching (usable for readiness before leadership). */
  async startInformers(): Promise<void> {
    await this.state.start();
  }

  /** Runs the reconcile loop until the signal aborts (leadership lost or shutdown). */
  async lead(signal: AbortSignal): Promise<void> {
    const queue = new WorkQueue({
      name: 'instances',
      logger: this.logger,
      registry: this.registry,
    });
    this.state.rebuild();
    await this.releaseOrphanedAddresses();
    if (signal.aborted) return;
    this.queue = queue;
    for (const inst of this.state.instances.list()) queue.add(objectKey(inst));
    this.running = queue.run((key) => this.reconciler.sync(key), this.config.workers);
    signal.addEventListener('abort', () => queue.shutDown(), { once: true });
    await this.running;
  }

  async stop(): Promise<void> {
    clearTimeout(this.kickTimer);
    this.queue?.shutDown();
    await this.running;
    await this.state.stop();
  }

  /** Addresses whose Instance no longer exists (deleted while no operator led) are freed. */
  private async releaseOrphanedAddresses(): Promise<void> {
    const live = new Set(this.state.instances.list().map((i) => i.metadata.uid));
    const orphaned = new Set(
      this.state.allocations
        .list()
        .map((a) => a.spec.instance.uid)
        .filter((uid) => !live.has(uid)),
    );
    for (const uid of orphaned) await this.allocator.release(uid);
    if (orphaned.size)
      this.logger.info('released addresses of vanished Instances', { instances: orphaned.size });
  }

  private onInstance(inst: Instance, type: string): void {
    if (type === 'delete') {
      this.reconciler.forget(inst).catch((err) =>
        this.logger.warn('could not release a deleted Instance', {
          instance: objectKey(inst),
          error: err as Error,
        }),
      );
      this.kickWaiting();
      return;
    }
    this.queue?.add(objectKey(inst));
  }

  private kickWaiting(): void {
    if (this.kickTimer) return;
    this.kickTimer = setTimeout(() => {
      this.kickTimer = undefined;
      for (const inst of this.state.instances.list())
        if (isWaiting(inst)) this.queue?.add(objectKey(inst));
    }, KICK_DELAY_MS);
  }
}

function isWaiting(inst: Instance): boolean {
  const phase = inst.status?.phase;
  return (
    !phase ||
    phase === 'Scheduling' ||
    (phase === 'Networking' && (inst.status?.interfaces?.length ?? 0) < inst.spec.networks.length)
  );
}
