// The operator's controllers over one shared cluster view: Instances (scheduling, addresses,
// phases), Networks (conflicts, VNIs, usage, deletion) and InstanceActions (judged, handed to
// the node, pruned). All watch from the start (readiness) and work only while this replica
// leads; a term ends once every controller has finished its syncs.
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '@kova/controller-kit';
import type { Registry } from 'prom-client';
import { ActionController } from './action/controller.js';
import type { ClusterState } from './cluster-state.js';
import type { OperatorConfig } from './config.js';
import { InstanceController } from './instance/controller.js';
import type { ReconcilerDeps } from './instance/sync-context.js';
import { NetworkController } from './network/controller.js';

export class Operator {
  readonly instances: InstanceController;
  readonly networks: NetworkController;
  readonly actions: ActionController;

  constructor(
    kc: KubeConfig,
    config: OperatorConfig,
    logger: Logger,
    registry: Registry,
    overrides: Partial<Pick<ReconcilerDeps, 'patcher'>> = {},
  ) {
    this.instances = new InstanceController(kc, config, logger, registry, overrides);
    const { state, allocator } = this.instances;
    this.networks = new NetworkController(kc, state, allocator, config, logger, registry);
    this.actions = new ActionController(kc, state, config, logger, registry);
  }

  get state(): ClusterState {
    return this.instances.state;
  }

  /** Starts watching (usable for readiness before leadership). */
  async startInformers(): Promise<void> {
    await this.instances.startInformers();
  }

  /** True while a term's queues are being worked (the liveness of a leader). */
  get reconciling(): boolean {
    return this.instances.reconciling && this.networks.reconciling && this.actions.reconciling;
  }

  /** Works both queues until the signal aborts; returns once every sync of the term is done. */
  async lead(signal: AbortSignal): Promise<void> {
    await Promise.all([
      this.instances.lead(signal),
      this.networks.lead(signal),
      this.actions.lead(signal),
    ]);
  }

  async stop(): Promise<void> {
    await this.actions.stop();
    await this.networks.stop();
    await this.instances.stop();
  }
}
