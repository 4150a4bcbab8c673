// The operator's controllers over one shared cluster view: Instances (scheduling, addresses,
// phases), Networks (conflicts, VNIs, usage, deletion) and InstanceActions (judged, handed to
// the node, pruned). All watch from the start (readiness) and work only while this replica
// leads; a term ends once every controller has finished its syncs.
import type { KubeConfig } from '@kubernetes/client-node';
import { sleep, type Logger } from '@kova/controller-kit';
import type { Registry } from 'prom-client';
import { ActionController } from './action/controller.js';
import type { ClusterState } from './cluster-state.js';
import type { OperatorConfig } from './config.js';
import { InstanceController } from './instance/controller.js';
import { adoptLegacyAllocations } from './ipam/legacy.js';
import type { ReconcilerDeps } from './instance/sync-context.js';
import { NetworkController } from './network/controller.js';

export class Operator {
  readonly instances: InstanceController;
  readonly networks: NetworkController;
  readonly actions: ActionController;

  constructor(
    private readonly kc: KubeConfig,
    config: OperatorConfig,
    private readonly logger: Logger,
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

  /** Works the queues until the signal aborts; returns once every sync of the term is done. */
  async lead(signal: AbortSignal): Promise<void> {
    if (!(await this.adoptLegacy(signal))) return;
    await Promise.all([
      this.instances.lead(signal),
      this.networks.lead(signal),
      this.actions.lead(signal),
    ]);
  }

  /** Earlier operators' IPAllocations into IPBlocks first, retried until done or the term ends. */
  private async adoptLegacy(signal: AbortSignal): Promise<boolean> {
    for (let retryMs = 1000; !signal.aborted; retryMs = Math.min(retryMs * 2, 30_000)) {
      try {
        await adoptLegacyAllocations(this.kc, this.instances.allocator, this.logger);
        return true;
      } catch (err) {
        this.logger.warn('moving IPAllocations into IPBlocks failed; retrying', {
          error: err as Error,
          retryMs,
        });
        await sleep(retryMs, signal);
      }
    }
    return false;
  }

  async stop(): Promise<void> {
    await this.actions.stop();
    await this.networks.stop();
    await this.instances.stop();
  }
}
