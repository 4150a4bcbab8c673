// Wires InstanceActions to their work queue. Handlers only enqueue, and they enqueue the
// Instance an action names (namespace/instance): its actions are judged together, one sync at a
// time, so two actions on one Instance can never both be accepted. A change of an Instance
// that has actions in flight (its phase, power or deletion) syncs them too.
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { apiStatus, Patcher, WorkQueue, type Logger } from '@kova/controller-kit';
import {
  actionRef,
  API_VERSION,
  GROUP,
  isFinished,
  OPERATOR_FIELD_MANAGER,
  PLURAL,
  VERSION,
  type InstanceActionObject,
} from '@kova/crds';
import type { Registry } from 'prom-client';
import type { ClusterState } from '../cluster-state.js';
import type { OperatorConfig } from '../config.js';
import { ActionReconciler, type ActionApi } from './reconciler.js';

export class ActionController {
  private readonly reconciler: ActionReconciler;
  /** One queue per leadership term, as for Instances. */
  private queue: WorkQueue | undefined;
  private running: Promise<void> | undefined;

  constructor(
    kc: KubeConfig,
    private readonly state: Pick<ClusterState, 'actions' | 'instances' | 'downForMs'>,
    config: OperatorConfig,
    private readonly logger: Logger,
    private readonly registry: Registry,
  ) {
    this.reconciler = new ActionReconciler({
      actions: state.actions,
      instances: state.instances,
      downForMs: (node) => state.downForMs(node),
      api: actionApi(kc),
      config: {
        historyLimit: config.actionHistoryLimit,
        historyMaxAgeMs: config.actionHistoryMaxAgeMs,
      },
      logger,
    });
    state.actions.on((a) => this.queue?.add(instanceKey(a)));
    state.instances.on((inst) => {
      const { namespace, name } = inst.metadata;
      const actions = state.actions.list(namespace);
      if (actions.some((a) => a.spec.instance === name && !isFinished(a.status?.phase)))
        this.queue?.add(`${namespace}/${name}`);
    });
  }

  get reconciling(): boolean {
    return this.queue !== undefined;
  }

  /** Syncs actions until the signal aborts; returns once every sync of this term has finished. */
  async lead(signal: AbortSignal): Promise<void> {
    const queue = new WorkQueue({
      name: 'instance-actions',
      logger: this.logger,
      registry: this.registry,
    });
    this.queue = queue;
    for (const key of new Set(this.state.actions.list().map(instanceKey))) queue.add(key);
    this.running = queue.runUntil(signal, (key) => this.reconciler.sync(key), 2);
    await this.running;
    if (this.queue === queue) this.queue = undefined;
  }

  async stop(): Promise<void> {
    this.queue?.shutDown();
    await this.running;
  }
}

const instanceKey = (a: InstanceActionObject) => `${a.metadata.namespace}/${a.spec.instance}`;

function actionApi(kc: KubeConfig): ActionApi {
  const custom = kc.makeApiClient(CustomObjectsApi);
  const patcher = new Patcher(kc, OPERATOR_FIELD_MANAGER);
  const rv = (a: InstanceActionObject) => a.metadata.resourceVersion as string;
  const at = { group: GROUP, version: VERSION, plural: PLURAL.InstanceAction };
  return {
    async get(namespace, name) {
      try {
        return (await custom.getNamespacedCustomObject({
          ...at,
          namespace,
          name,
        })) as InstanceActionObject;
      } catch (err) {
        if (apiStatus(err) === 404) return undefined;
        throw err;
      }
    },
    setStatus: async (a, status) =>
      (await patcher.mergeStatus(actionRef(a), rv(a), status)) as InstanceActionObject,
    async setOwner(a, inst) {
      const owner = {
        apiVersion: API_VERSION,
        kind: 'Instance',
        name: inst.metadata.name,
        uid: inst.metadata.uid,
      };
      const owners = [...(a.metadata.ownerReferences ?? []), owner];
      await patcher.mergeMetadata(actionRef(a), rv(a), { ownerReferences: owners });
    },
    async delete(a) {
      try {
        await custom.deleteNamespacedCustomObject({
          ...at,
          namespace: a.metadata.namespace,
          name: a.metadata.name,
          body: { preconditions: { uid: a.metadata.uid } },
        });
      } catch (err) {
        if (apiStatus(err) !== 404) throw err;
      }
    },
  };
}
