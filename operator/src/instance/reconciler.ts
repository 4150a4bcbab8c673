// The operator's half of an Instance's life, one handler per phase: schedule and bind
// (Scheduling), allocate addresses (Networking), react to the agent's faults by rescheduling or
// failing, and release everything on delete. Every handler reads the informer's view and writes
// with that view's resourceVersion, so a stale decision is refused rather than applied.
import {
  apiStatus,
  type Applier,
  type EventRecorder,
  type Logger,
  type Patcher,
  type SyncResult,
} from '@kova/controller-kit';
import {
  API_VERSION,
  ConditionType,
  NODE_CLEANUP_FINALIZER,
  OPERATOR_FINALIZER,
  PLURAL,
  setCondition,
  type Condition,
  type Fault,
  type InstanceStatus,
  type Interface,
  type Phase,
} from '@kova/crds';
import { groupKey, type ClusterState, type Instance } from '../cluster-state.js';
import type { OperatorConfig } from '../config.js';
import type { AddressAllocator } from '../ipam/allocator.js';
import type { OperatorMetrics } from '../metrics.js';
import { selectHost } from '../scheduler/scheduler.js';
import type { GroupPolicy, RequestSpec } from '../scheduler/types.js';

export interface ReconcilerDeps {
  state: ClusterState;
  allocator: AddressAllocator;
  applier: Applier;
  patcher: Patcher;
  events: EventRecorder;
  config: OperatorConfig;
  metrics: OperatorMetrics;
  logger: Logger;
}

/** Waiting Instances are also retried on this period, in case a change was missed. */
const RETRY_WAITING_MS = 30_000;
const STALE_VIEW_RETRY_MS = 200;

type Waiting = { reason: string; message: string };

export class InstanceReconciler {
  constructor(private readonly d: ReconcilerDeps) {}

  async sync(key: string): Promise<SyncResult | void> {
    try {
      return await this.reconcile(key);
    } catch (err) {
      // Deleted while we worked on a cached copy: its delete event releases what it held.
      if (apiStatus(err) === 404) return;
      throw err;
    }
  }

  private async reconcile(key: string): Promise<SyncResult | void> {
    const [namespace, name] = key.split('/') as [string, string];
    let inst = this.d.state.instances.get(name, namespace);
    if (!inst) return;
    if (inst.metadata.deletionTimestamp) return this.finalize(inst);
    if (!hasFinalizers(inst)) inst = await this.addFinalizers(inst);
    const phase = inst.status?.phase;
    if (!phase || phase === 'Scheduling') return this.schedule(inst);
    if (phase === 'Error') return;
    if (inst.status?.fault?.node && inst.status.fault.node === inst.status.nodeName)
      return this.handleFault(inst);
    if (phase === 'Networking' && !allocated(inst)) return this.allocate(inst);
    this.observeActive(inst);
  }

  /** Called when an Instance is gone from the API: nothing of it may stay claimed. */
  async forget(inst: Instance): Promise<void> {
    this.d.state.claims.release(inst.metadata.uid);
    await this.d.allocator.release(inst.metadata.uid);
  }

  private async addFinalizers(inst: Instance): Promise<Instance> {
    const finalizers = [
      ...new Set([...(inst.metadata.finalizers ?? []), OPERATOR_FINALIZER, NODE_CLEANUP_FINALIZER]),
    ];
    return (await this.timed('finalizers', () =>
      this.d.patcher.setFinalizers(ref(inst), rv(inst), finalizers),
    )) as Instance;
  }

  private async schedule(inst: Instance): Promise<SyncResult | void> {
    // Our own bind is not in the informer's view yet: scheduling again would count the
    // Instance twice, and on NoValidHost release the addresses it was just given.
    if (this.d.state.claims.get(inst.metadata.uid)) return { requeueAfterMs: STALE_VIEW_RETRY_MS };
    const waiting = this.prerequisites(inst);
    if (waiting) return this.wait(inst, 'Scheduling', ConditionType.Scheduled, waiting);
    const flavor = this.d.state.flavors.get(inst.spec.flavor);
    const image = this.d.state.images.get(inst.spec.image);
    if (!flavor || !image) return;
    const tooSmall = flavorTooSmall(flavor.spec, image.spec, inst.spec.flavor, inst.spec.image);
    if (tooSmall) return this.fail(inst, tooSmall);

    const req = this.requestSpec(inst);
    const started = performance.now();
    const decision = selectHost(this.d.state.hostStates(), req, {
      multipliers: this.d.config.multipliers,
      hostSubsetSize: this.d.config.hostSubsetSize,
    });
    this.d.metrics.schedulingSeconds.observe(
      { result: decision.host ? 'bound' : 'no_valid_host' },
      (performance.now() - started) / 1000,
    );
    if (!decision.host) {
      this.d.metrics.schedulingFailures.inc({ reason: 'NoValidHost' });
      const result = await this.wait(inst, 'Scheduling', ConditionType.Scheduled, {
        reason: 'NoValidHost',
        message: decision.message,
      });
      // Addresses taken by a bind that never got written (a crash between the two) go back.
      await this.d.allocator.release(inst.metadata.uid);
      return result;
    }
    const node = decision.host.name;
    this.d.state.claims.set(inst.metadata.uid, {
      node,
      resources: req.resources,
      group: req.group?.key,
    });
    try {
      const result = await this.allocateAll(inst);
      const conditions = [
        setCondition(inst.status?.conditions, {
          type: ConditionType.Scheduled,
          status: 'True',
          reason: 'Bound',
          message: `bound to hypervisor ${node}`,
        }),
        networkCondition(inst, result),
      ];
      await this.applyStatus(inst, {
        phase: 'Networking',
        nodeName: node,
        interfaces: result.interfaces,
        conditions,
      });
      this.d.events.record(inst, 'Normal', 'Scheduled', `Bound to hypervisor ${node}`);
      if (result.waiting) return this.networkWaiting(inst, result.waiting);
    } catch (err) {
      this.d.state.claims.release(inst.metadata.uid);
      throw err;
    }
  }

  private async allocate(inst: Instance): Promise<SyncResult | void> {
    const result = await this.allocateAll(inst);
    await this.applyStatus(inst, {
      phase: 'Networking',
      nodeName: inst.status?.nodeName,
      interfaces: result.interfaces,
      conditions: [networkCondition(inst, result)],
    });
    if (result.waiting) return this.networkWaiting(inst, result.waiting);
  }

  private networkWaiting(inst: Instance, waiting: Waiting): SyncResult {
    this.d.events.record(inst, 'Warning', waiting.reason, waiting.message);
    return { requeueAfterMs: RETRY_WAITING_MS };
  }

  private async allocateAll(
    inst: Instance,
  ): Promise<{ interfaces: Interface[]; waiting?: Waiting }> {
    const interfaces: Interface[] = [];
    for (const req of inst.spec.networks) {
      const a = await this.timed('allocate', () => this.d.allocator.allocate(inst, req));
      if ('reason' in a) return { interfaces, waiting: a };
      interfaces.push(a.interface);
    }
    return { interfaces };
  }

  /** The agent reported a fault: reschedule elsewhere if another node could succeed, else fail. */
  private async handleFault(inst: Instance): Promise<void> {
    const fault = inst.status?.fault as Fault;
    const node = inst.status?.nodeName as string;
    const attempts = [
      ...(inst.status?.attempts ?? []),
      {
        node,
        reason: fault.reason,
        message: fault.message,
        time: fault.time ?? new Date().toISOString(),
      },
    ];
    this.d.state.recordFailure(node);
    await this.forget(inst);
    if (fault.retryable && attempts.length < this.d.config.maxAttempts) {
      const conditions = [
        setCondition(inst.status?.conditions, {
          type: ConditionType.Scheduled,
          status: 'False',
          reason: 'Rescheduling',
          message: `attempt ${attempts.length} on ${node} failed with ${fault.reason}; trying another hypervisor`,
        }),
      ];
      await this.mergeStatus(inst, {
        phase: 'Scheduling',
        attempts,
        conditions,
        nodeName: null,
        interfaces: null,
        fault: null,
        powerState: null,
        domainUUID: null,
      });
      this.d.events.record(
        inst,
        'Warning',
        'Rescheduling',
        `${fault.reason} on ${node}: ${fault.message}`,
      );
      return;
    }
    const final: Fault = fault.retryable
      ? {
          reason: 'MaxRetriesExceeded',
          message: `all ${attempts.length} attempts failed: ${attempts.map((a) => `${a.node}: ${a.reason} (${a.message})`).join('; ')}`,
          time: new Date().toISOString(),
          retryable: false,
        }
      : fault;
    await this.mergeStatus(inst, {
      phase: 'Error',
      attempts,
      fault: final,
      nodeName: null,
      interfaces: null,
    });
    this.d.events.record(inst, 'Warning', final.reason, final.message);
  }

  /** Deleting: wait for the agent to clean its node (or give up on a dead node), then release. */
  private async finalize(inst: Instance): Promise<SyncResult | void> {
    const finalizers = inst.metadata.finalizers ?? [];
    if (!finalizers.includes(OPERATOR_FINALIZER)) return;
    if (inst.status?.phase !== 'Deleting') {
      inst = (await this.mergeStatus(inst, { phase: 'Deleting' })) as Instance;
    }
    const node = inst.status?.nodeName;
    if (finalizers.includes(NODE_CLEANUP_FINALIZER)) {
      const downFor = node ? this.d.state.downForMs(node) : Infinity;
      const limit = this.d.config.deleteWithNodeDownAfterMs;
      if (node && downFor < limit)
        return { requeueAfterMs: Math.max(1000, Math.min(limit - downFor, RETRY_WAITING_MS)) };
      if (node)
        this.d.events.record(
          inst,
          'Warning',
          'NodeDown',
          `hypervisor ${node} has been down for ${Math.round(downFor / 1000)}s; deleting without its agent, whose garbage collector removes the domain when it returns`,
        );
      inst = (await this.timed('finalizers', () =>
        this.d.patcher.setFinalizers(
          ref(inst),
          rv(inst),
          finalizers.filter((f) => f !== NODE_CLEANUP_FINALIZER),
        ),
      )) as Instance;
    }
    await this.forget(inst);
    const rest = (inst.metadata.finalizers ?? []).filter((f) => f !== OPERATOR_FINALIZER);
    await this.timed('finalizers', () => this.d.patcher.setFinalizers(ref(inst), rv(inst), rest));
  }

  private prerequisites(inst: Instance): Waiting | undefined {
    const s = this.d.state;
    if (!s.flavors.get(inst.spec.flavor))
      return {
        reason: 'FlavorNotFound',
        message: `Flavor ${inst.spec.flavor} does not exist; create it or fix spec.flavor`,
      };
    if (!s.images.get(inst.spec.image))
      return {
        reason: 'ImageNotFound',
        message: `Image ${inst.spec.image} does not exist; create it or fix spec.image`,
      };
    const missing = inst.spec.networks.find((n) => !s.networks.get(n.network));
    if (missing)
      return {
        reason: 'NetworkNotFound',
        message: `Network ${missing.network} does not exist; create it or fix spec.networks`,
      };
    if (
      inst.spec.serverGroup &&
      !s.serverGroups.get(inst.spec.serverGroup, inst.metadata.namespace)
    ) {
      return {
        reason: 'ServerGroupNotFound',
        message: `ServerGroup ${inst.spec.serverGroup} does not exist in namespace ${inst.metadata.namespace}`,
      };
    }
    return undefined;
  }

  private requestSpec(inst: Instance): RequestSpec {
    const s = this.d.state;
    const flavor = s.flavors.get(inst.spec.flavor);
    const image = s.images.get(inst.spec.image);
    const sg = inst.spec.serverGroup
      ? s.serverGroups.get(inst.spec.serverGroup, inst.metadata.namespace)
      : undefined;
    return {
      resources: s.flavorResources(flavor!),
      arch: image?.spec.architecture ?? 'x86_64',
      zone: inst.spec.availabilityZone,
      nodeSelector: inst.spec.nodeSelector,
      triedNodes: new Set((inst.status?.attempts ?? []).map((a) => a.node)),
      group: sg
        ? {
            key: groupKey(inst) as string,
            policy: sg.spec.policy as GroupPolicy,
            maxPerNode: sg.spec.maxPerNode ?? 1,
          }
        : undefined,
    };
  }

  /** Records why the Instance waits, once per reason and message, and retries later. */
  private async wait(inst: Instance, phase: Phase, type: string, w: Waiting): Promise<SyncResult> {
    const current = inst.status?.conditions?.find((c) => c.type === type);
    if (
      inst.status?.phase !== phase ||
      current?.reason !== w.reason ||
      current.message !== w.message
    ) {
      const conditions = [
        setCondition(inst.status?.conditions, {
          type,
          status: 'False',
          reason: w.reason,
          message: w.message,
        }),
      ];
      await this.applyStatus(inst, { phase, conditions });
      this.d.events.record(inst, 'Warning', w.reason, w.message);
    }
    return { requeueAfterMs: RETRY_WAITING_MS };
  }

  private async fail(inst: Instance, fault: Fault): Promise<void> {
    await this.mergeStatus(inst, {
      phase: 'Error',
      fault: { ...fault, time: new Date().toISOString(), retryable: false },
    });
    this.d.events.record(inst, 'Warning', fault.reason, fault.message);
  }

  private observeActive(inst: Instance): void {
    const ready = inst.status?.conditions?.find((c) => c.type === ConditionType.Ready);
    if (
      inst.status?.phase !== 'Active' ||
      ready?.status !== 'True' ||
      this.seenActive.has(inst.metadata.uid)
    )
      return;
    this.seenActive.add(inst.metadata.uid);
    const created = Date.parse(inst.metadata.creationTimestamp as unknown as string);
    const active = Date.parse(ready.lastTransitionTime);
    this.d.metrics.createToActiveSeconds.observe((active - created) / 1000);
    let from = created;
    for (const [phase, type] of PHASE_ENDS) {
      const c = inst.status.conditions?.find((x) => x.type === type && x.status === 'True');
      if (!c) continue;
      const at = Date.parse(c.lastTransitionTime);
      this.d.metrics.phaseSeconds.observe({ phase }, Math.max(0, at - from) / 1000);
      from = at;
    }
  }

  private readonly seenActive = new Set<string>();

  private applyStatus(inst: Instance, status: Partial<InstanceStatus>): Promise<unknown> {
    const body = { ...status, observedGeneration: inst.metadata.generation };
    return this.timed('status', () => this.d.applier.applyStatus(ref(inst), body, rv(inst)));
  }

  private mergeStatus(inst: Instance, status: Record<string, unknown>): Promise<unknown> {
    return this.timed('status', () =>
      this.d.patcher.mergeStatus(ref(inst), rv(inst), {
        ...status,
        observedGeneration: inst.metadata.generation,
      }),
    );
  }

  private async timed<T>(op: string, fn: () => Promise<T>): Promise<T> {
    const end = this.d.metrics.apiWriteSeconds.startTimer({ op });
    try {
      return await fn();
    } catch (err) {
      if (apiStatus(err) === 409) this.d.logger.debug('stale view; retrying', { op });
      throw err;
    } finally {
      end();
    }
  }
}

/** The phase that ends when each condition turns True. */
const PHASE_ENDS: [Phase, string][] = [
  ['Scheduling', ConditionType.Scheduled],
  ['Networking', ConditionType.NetworkReady],
  ['BlockDeviceMapping', ConditionType.BlockDevicesReady],
  ['Spawning', ConditionType.Spawned],
];

function networkCondition(inst: Instance, result: { waiting?: Waiting }): Condition {
  const c = result.waiting
    ? { reason: result.waiting.reason, message: result.waiting.message }
    : {
        reason: 'AddressesAllocated',
        message: 'addresses allocated; waiting for the node agent to plug the interfaces',
      };
  return setCondition(inst.status?.conditions, {
    type: ConditionType.NetworkReady,
    status: 'False',
    ...c,
  });
}

function flavorTooSmall(
  flavor: { rootDiskGiB: number; memoryMiB: number },
  image: { minDiskGiB?: number; minMemoryMiB?: number },
  flavorName: string,
  imageName: string,
): Fault | undefined {
  if ((image.minDiskGiB ?? 0) > flavor.rootDiskGiB) {
    return {
      reason: 'FlavorDiskTooSmall',
      message: `Image ${imageName} needs a root disk of ${image.minDiskGiB} GiB; Flavor ${flavorName} has ${flavor.rootDiskGiB} GiB. Use a larger Flavor.`,
    };
  }
  if ((image.minMemoryMiB ?? 0) > flavor.memoryMiB) {
    return {
      reason: 'FlavorMemoryTooSmall',
      message: `Image ${imageName} needs ${image.minMemoryMiB} MiB of memory; Flavor ${flavorName} has ${flavor.memoryMiB} MiB. Use a larger Flavor.`,
    };
  }
  return undefined;
}

const hasFinalizers = (inst: Instance) =>
  [OPERATOR_FINALIZER, NODE_CLEANUP_FINALIZER].every((f) => inst.metadata.finalizers?.includes(f));
const allocated = (inst: Instance) =>
  (inst.status?.interfaces?.length ?? 0) === inst.spec.networks.length;
const rv = (inst: Instance) => inst.metadata.resourceVersion as string;
const ref = (inst: Instance) => ({
  apiVersion: API_VERSION,
  kind: 'Instance',
  plural: PLURAL.Instance,
  name: inst.metadata.name,
  namespace: inst.metadata.namespace,
});
