// The operator's sync of one Instance's InstanceActions, read top to bottom (the queue key is
// the Instance, namespace/name, so no two syncs judge actions of one Instance at once):
//   1. actions in flight whose Instance is gone, replaced, being deleted, or whose node stopped
//      renewing its heartbeat fail (the agent that ran them can no longer say how they ended);
//   2. new actions are judged oldest first, as Nova's check_instance_state: refused at once
//      with a reason, or accepted and handed to the node the Instance is on (status.nodeName,
//      which that node's agent watches); a second action while one is in flight is refused;
//   3. every action of an existing Instance is owned by it, so the garbage collector removes the
//      history with the Instance;
//   4. finished actions beyond the history limit, or older than the maximum age, are deleted.
// Each write carries the resourceVersion it was decided on: a stale view fails the write (409),
// and the queue syncs again on a fresh one.
import type { Logger, SyncResult } from '@kova/controller-kit';
import {
  actionRefusal,
  ActionReason,
  finishedStatus,
  isFinished,
  isSession,
  type ActionStatus,
  type InstanceActionObject,
  type InstanceObject,
  type Refusal,
} from '@kova/crds';

export interface ActionApi {
  /** A fresh read, for the one decision a lagging watch must not make (a conflict). */
  get(namespace: string, name: string): Promise<InstanceActionObject | undefined>;
  /** Resolves to the action as written. */
  setStatus(a: InstanceActionObject, status: ActionStatus): Promise<InstanceActionObject>;
  setOwner(a: InstanceActionObject, inst: InstanceObject): Promise<void>;
  delete(a: InstanceActionObject): Promise<void>;
}

export interface ActionDeps {
  actions: { list(namespace?: string): readonly InstanceActionObject[] };
  instances: { get(name: string, namespace?: string): InstanceObject | undefined };
  /** Milliseconds the node has been without a fresh heartbeat (0 while up). */
  downForMs(node: string): number;
  api: ActionApi;
  config: { historyLimit: number; historyMaxAgeMs: number };
  logger: Logger;
  now?: () => number;
}

const MAX_RECHECK_MS = 3_600_000;
/** An action its node's agent has not taken up this long after creation fails (NotTakenUp). */
export const TAKE_UP_TIMEOUT_MS = 120_000;
/** An accepted action is looked at again this often, so a node that dies under it is noticed. */
const IN_FLIGHT_RECHECK_MS = 10_000;

export class ActionReconciler {
  /** Actions whose status this sync wrote (one sync at a time: the queue key is the Instance). */
  private readonly written = new Set<string>();

  constructor(private readonly d: ActionDeps) {}

  async sync(key: string): Promise<SyncResult | void> {
    try {
      return await this.judgeAll(key);
    } finally {
      this.written.clear();
    }
  }

  private async judgeAll(key: string): Promise<SyncResult> {
    const [namespace, instance] = key.split('/') as [string, string];
    const inst = this.d.instances.get(instance, namespace);
    const actions = this.d.actions
      .list(namespace)
      .filter((a) => a.spec.instance === instance)
      .sort(byCreation);
    // First what is in flight (whatever its place in the order), then the new, oldest first: a
    // new action is judged against every action already accepted.
    let inFlight: InstanceActionObject | undefined;
    for (const a of actions.filter((x) => x.status?.phase && !isFinished(x.status.phase))) {
      const lost = this.lostInFlight(a, inst);
      if (lost) await this.fail(a, lost, inst);
      // A console session runs beside power actions: it neither waits for one nor holds one up.
      else if (!isSession(a.spec)) inFlight ??= a;
    }
    for (const a of actions.filter((x) => !x.status?.phase)) {
      const session = isSession(a.spec);
      const accepted = await this.judge(a, inst, session ? undefined : inFlight);
      if (!session) inFlight = accepted ?? inFlight;
    }
    if (inst)
      await this.own(
        actions.filter((a) => !this.written.has(a.metadata.uid)),
        inst,
      );
    const next = await this.prune(actions);
    return { requeueAfterMs: inFlight ? Math.min(next, IN_FLIGHT_RECHECK_MS) : next };
  }

  /** Why an accepted or running action can no longer end well, if it cannot. */
  private lostInFlight(a: InstanceActionObject, inst: InstanceObject | undefined) {
    if (!inst || inst.metadata.uid !== a.status?.instanceUID)
      return refusal(
        ActionReason.InstanceReplaced,
        `Instance ${a.spec.instance} was deleted while the action was in flight`,
      );
    if (inst.metadata.deletionTimestamp)
      return refusal(ActionReason.InstanceDeleting, `Instance ${a.spec.instance} is being deleted`);
    const accepted = a.status?.acceptedTime ? Date.parse(a.status.acceptedTime) : created(a);
    const waited = this.now() - accepted;
    if (a.status?.phase === 'Accepted' && waited > TAKE_UP_TIMEOUT_MS)
      return refusal(
        ActionReason.NotTakenUp,
        `the node agent of ${a.status.nodeName} did not take the action up within ${TAKE_UP_TIMEOUT_MS / 1000}s (is it running, and as new as the operator?)`,
      );
    return this.nodeDown(a.status?.nodeName);
  }

  /** Accepts `a` (returned) or refuses it. */
  private async judge(
    a: InstanceActionObject,
    inst: InstanceObject | undefined,
    inFlight: InstanceActionObject | undefined,
  ): Promise<InstanceActionObject | undefined> {
    const why = await this.refusalOf(a, inst, inFlight);
    if (why) return void (await this.fail(a, why, inst));
    const node = inst?.status?.nodeName as string;
    const written = await this.write(a, {
      phase: 'Accepted',
      reason: ActionReason.Accepted,
      message: `handed to the node agent of ${node}`,
      instanceUID: inst?.metadata.uid,
      nodeName: node,
      acceptedTime: new Date(this.now()).toISOString(),
    });
    this.d.logger.info('instance action accepted', { ...logFields(a), node });
    await this.ownOne(written, inst);
    return written;
  }

  private async refusalOf(
    a: InstanceActionObject,
    inst: InstanceObject | undefined,
    inFlight: InstanceActionObject | undefined,
  ): Promise<Refusal | undefined> {
    const name = a.spec.instance;
    if (!inst)
      return refusal(
        ActionReason.InstanceNotFound,
        `Instance ${name} not found in namespace ${a.metadata.namespace}`,
      );
    if (inst.metadata.deletionTimestamp)
      return refusal(ActionReason.InstanceDeleting, `Instance ${name} is being deleted`);
    const busy = inFlight && (await this.stillInFlight(inFlight));
    if (busy)
      return refusal(
        ActionReason.ActionInProgress,
        `action ${busy.metadata.name} (${busy.spec.action}) is in progress on Instance ${name}; ` +
          'try again once it has finished (kubectl kova actions ' +
          `${name})`,
      );
    const state = actionRefusal(a.spec, {
      name,
      phase: inst.status?.phase,
      power: inst.status?.powerState,
      runStrategy: inst.spec.runStrategy,
    });
    return state ?? this.nodeDown(inst.status?.nodeName);
  }

  private async stillInFlight(a: InstanceActionObject) {
    if (a.status?.phase === undefined) return a;
    const fresh = await this.d.api.get(a.metadata.namespace, a.metadata.name);
    return fresh && !isFinished(fresh.status?.phase) ? fresh : undefined;
  }

  private nodeDown(node: string | undefined): Refusal | undefined {
    const down = node ? this.d.downForMs(node) : 0;
    if (!node || down <= 0) return undefined;
    return refusal(
      ActionReason.NodeUnreachable,
      `node ${node} has not renewed its heartbeat for ${Math.round(down / 1000)}s beyond the ` +
        'timeout; the action cannot be carried out there (its outcome on the node is unknown)',
    );
  }

  private async fail(a: InstanceActionObject, why: Refusal, inst: InstanceObject | undefined) {
    const written = await this.write(
      a,
      finishedStatus({ ok: false, ...why }, new Date(this.now())),
    );
    this.d.logger.info('instance action failed', { ...logFields(a), reason: why.reason });
    await this.ownOne(written, inst);
  }

  /** Writes the status; the action is then owned from the copy written (its resourceVersion). */
  private async write(a: InstanceActionObject, status: ActionStatus) {
    this.written.add(a.metadata.uid);
    return this.d.api.setStatus(a, status);
  }

  /** Every action of this Instance is owned by it (the history goes with the Instance). */
  private async own(actions: readonly InstanceActionObject[], inst: InstanceObject) {
    for (const a of actions) await this.ownOne(a, inst);
  }

  /**
   * Owns `a` (as just written: the patch carries its resourceVersion) if it belongs to this
   * Instance: accepted for its UID, or never accepted and created after it — not an action of
   * an earlier Instance of the same name.
   */
  private async ownOne(a: InstanceActionObject, inst: InstanceObject | undefined) {
    if (!inst || a.metadata.ownerReferences?.some((o) => o.uid === inst.metadata.uid)) return;
    const uid = a.status?.instanceUID;
    const born = Date.parse(String(inst.metadata.creationTimestamp ?? 0));
    if (uid ? uid === inst.metadata.uid : created(a) >= born) await this.d.api.setOwner(a, inst);
  }

  /** Deletes what the history keeps no longer; returns when the next one is due. */
  private async prune(actions: readonly InstanceActionObject[]): Promise<number> {
    const { historyLimit, historyMaxAgeMs } = this.d.config;
    const finished = actions.filter((a) => isFinished(a.status?.phase));
    const surplus = Math.max(0, finished.length - historyLimit);
    let next = MAX_RECHECK_MS;
    for (const [i, a] of finished.entries()) {
      const ends = Date.parse(a.status?.completionTime ?? '') + historyMaxAgeMs - this.now();
      if (i < surplus || !(ends > 0)) {
        await this.d.api.delete(a);
        this.d.logger.debug('instance action pruned', logFields(a));
      } else next = Math.min(next, ends);
    }
    return next;
  }

  private now(): number {
    return (this.d.now ?? Date.now)();
  }
}

const refusal = (reason: string, message: string): Refusal => ({ reason, message });

const created = (a: InstanceActionObject) => Date.parse(String(a.metadata.creationTimestamp ?? 0));

const logFields = (a: InstanceActionObject) => ({
  action: `${a.metadata.namespace}/${a.metadata.name}`,
  kind: a.spec.action,
  instance: a.spec.instance,
  requestedBy: a.spec.requestedBy,
});

/**
 * Oldest first. Creation times have a resolution of a second; within one, the resourceVersion
 * of an action nobody has written since its creation is its place in etcd's order.
 */
function byCreation(a: InstanceActionObject, b: InstanceActionObject): number {
  const t = (x: InstanceActionObject) => Date.parse(String(x.metadata.creationTimestamp ?? ''));
  const rv = (x: InstanceActionObject) => Number(x.metadata.resourceVersion ?? 0);
  return t(a) - t(b) || rv(a) - rv(b);
}
