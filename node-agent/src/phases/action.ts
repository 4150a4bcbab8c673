// Carries out the InstanceAction in flight on an Instance of this node (the operator accepted it
// and named this node). Runs inside the Instance's sync, in place of the power handler, so the
// runStrategy never fights an action (a reboot's shutdown is not "restarted"), and one sync per
// Instance at a time holds for actions too. Each look:
//   Accepted → checked against what libvirt says now (refused with a reason if it no longer
//     makes sense), planned (steps listed Pending), Running; the Instance shows the task;
//   Running  → the first unfinished step is started (again, if an earlier agent process started
//     it: starts are idempotent), or looked at until its effect shows; a shutdown that outlasts
//     the timeout powers off (Nova's soft → hard fallback); a step that takes far too long fails;
//   done     → the Instance's status first (task cleared, then the power handler reports what
//     the guest does now), the action's result after it (settle): whoever reads Succeeded
//     finds the Instance already saying what the action did.
// Progress lives in the action's status, so a restarted agent resumes at the step it was in.
import { apiStatus, type Patcher } from '@kova/controller-kit';
import {
  actionRef,
  actionRefusal,
  finishedStatus,
  ActionReason,
  ConditionType,
  isFinished,
  isSession,
  taskOf,
  type ActionOutcome,
  type ActionStatus,
  type ActionStep,
  type InstanceActionObject,
} from '@kova/crds';
import { planOf, stepDef } from '../actions/steps.js';
import type { StepContext } from '../build/step.js';
import { recordedBase } from '../build/steps.js';
import { BuildFault } from '../errors.js';
import { keyOf } from '../deps.js';
import { lookupDomain, powerStateOf } from '../domain-removal.js';
import { ErrorCode, isLibvirtError } from '../libvirt/index.js';
import { lv } from '../libvirt-call.js';
import { POLL_MS } from '../power/policy.js';
import type { StatusChange } from '../status.js';
import type { PhaseResult } from './result.js';

/** What the handler needs besides the step context: the actions this node was handed. */
export interface ActionSource {
  list(namespace?: string): readonly InstanceActionObject[];
}

/** A step may take this long beyond the shutdown timeout before the action fails. */
export const STEP_TIMEOUT_MS = 120_000;

export class ActionHandler {
  /** Our last write of each action, until the informer shows it (a lagging view must not rerun a step). */
  private readonly written = new Map<string, InstanceActionObject>();
  /** Steps this process started (action UID/step index): others were an earlier process's. */
  private readonly started = new Set<string>();
  /** Per Instance UID, the finished action whose result waits for the Instance's status. */
  private readonly settling = new Map<
    string,
    { action: InstanceActionObject; outcome: ActionOutcome }
  >();

  constructor(
    private readonly source: ActionSource,
    private readonly patcher: Pick<Patcher, 'mergeStatus'>,
  ) {}

  /** The power action in flight on this Instance here, if any (sessions are the console's). */
  inFlight(c: Pick<StepContext, 'inst'>): InstanceActionObject | undefined {
    const { namespace, name, uid } = c.inst.metadata;
    if (this.settling.has(uid)) return undefined;
    return this.source
      .list(namespace)
      .filter(
        (a) => a.spec.instance === name && a.status?.instanceUID === uid && !isSession(a.spec),
      )
      .map((a) => this.latest(a))
      .find((a) => a.status?.phase === 'Accepted' || a.status?.phase === 'Running');
  }

  async handle(c: StepContext, action: InstanceActionObject): Promise<PhaseResult> {
    let a = action;
    if (a.status?.phase === 'Accepted') {
      const begun = await this.begin(c, a);
      if (!begun) return { kind: 'continue', status: {} };
      a = begun;
    }
    for (;;) {
      const steps = a.status?.steps ?? [];
      const i = steps.findIndex((s) => s.phase !== 'Succeeded');
      if (i < 0) return this.finish(c, a, { ok: true, message: summary(a) });
      const step = steps[i] as ActionStep;
      const def = stepDef(step.name);
      if (!def) return this.finish(c, a, failedStep(step.name, 'unknown step'));
      if (step.phase === 'Failed') return this.finish(c, a, failedStep(step.name, step.message));
      const key = `${a.metadata.uid}/${i}`;
      try {
        if (step.phase === 'Pending')
          a = await this.setStep(a, i, { phase: 'Running', startTime: now() });
        const since = Date.parse((a.status?.steps?.[i] as ActionStep).startTime ?? now());
        if (!this.started.has(key)) {
          this.started.add(key);
          await def.start(c);
        }
        if (await def.done(c)) {
          this.started.delete(key);
          a = await this.setStep(a, i, { phase: 'Succeeded', completionTime: now() });
          continue;
        }
        const elapsed = Date.now() - since;
        const timeout = c.d.config.shutdownTimeoutMs;
        // The fallback first: after an agent outage a shutdown still gets its power-off.
        if (def.overdue && elapsed >= timeout && !step.message) {
          a = await this.setStep(a, i, { message: await def.overdue(c) });
          continue;
        }
        if (elapsed >= timeout + STEP_TIMEOUT_MS) throw new StepTimeout(elapsed);
        return { kind: 'complete', requeueAfterMs: POLL_MS };
      } catch (err) {
        // The API server or libvirtd away is no verdict on the step: the sync is tried again.
        if (apiStatus(err) !== undefined || unreachable(err)) {
          this.started.delete(key);
          throw err;
        }
        this.started.delete(key);
        const message = (err as Error).message;
        a = await this.setStep(a, i, { phase: 'Failed', completionTime: now(), message });
        return this.finish(c, a, failedStep(step.name, message, err instanceof StepTimeout));
      }
    }
  }

  /**
   * Writes the result of the action that finished on this Instance, once the power handler has
   * reported the Instance's state; the reconciler calls it after every power sync.
   */
  async settle(c: StepContext): Promise<void> {
    const uid = c.inst.metadata.uid;
    const pending = this.settling.get(uid);
    if (!pending) return;
    const { outcome: o } = pending;
    // The newest copy: the operator may have written since (its owner patch, a failure).
    const a = this.current(pending.action);
    if (!a || isFinished(a.status?.phase)) return void this.settling.delete(uid);
    let done: InstanceActionObject;
    try {
      done = await this.write(a, finishedStatus(o));
    } catch (err) {
      if (apiStatus(err) !== 404) throw err;
      return void this.settling.delete(uid);
    }
    this.settling.delete(uid);
    const who = requester(a);
    c.d.events.record(
      c.inst,
      o.ok ? 'Normal' : 'Warning',
      `${a.spec.action}${o.ok ? 'Succeeded' : 'Failed'}`,
      `InstanceAction ${done.metadata.name} (${a.spec.action}${who}): ${o.message}`,
    );
    c.d.logger.info('instance action finished', {
      instance: keyOf(c.inst),
      action: done.metadata.name,
      kind: a.spec.action,
      result: done.status?.phase,
      reason: done.status?.reason,
    });
  }

  /** Checks the action against libvirt's view, plans it and shows the task; undefined if refused. */
  private async begin(c: StepContext, a: InstanceActionObject) {
    const conn = await c.d.session.conn();
    const dom = await lv(c.d.metrics, 'lookupByUUID', () =>
      lookupDomain(conn, c.inst.metadata.uid),
    );
    const state = dom ? (await lv(c.d.metrics, 'getState', () => dom.getState())).state : undefined;
    const refusal = dom
      ? (actionRefusal(a.spec, {
          name: c.inst.metadata.name,
          phase: c.inst.status?.phase,
          power: powerStateOf(state as number),
          runStrategy: c.inst.spec.runStrategy,
        }) ?? (await this.imageRefusal(c, a)))
      : { reason: ActionReason.DomainMissing, message: 'the domain is not defined on the node' };
    if (refusal) {
      this.settling.set(c.inst.metadata.uid, { action: a, outcome: { ok: false, ...refusal } });
      await this.settle(c);
      return undefined;
    }
    const steps = planOf(a.spec, state as number).map((name): ActionStep => ({
      name,
      phase: 'Pending',
    }));
    const task = taskOf(a.spec);
    await c.report({
      task,
      action: a.metadata.name,
      conditions: [
        {
          type: ConditionType.Ready,
          status: 'False',
          reason: task ?? a.spec.action,
          message: `${a.spec.action} in progress (InstanceAction ${a.metadata.name})`,
        },
      ],
    });
    return this.write(a, {
      phase: 'Running',
      reason: ActionReason.Running,
      message: steps.map((s) => s.name).join(' → '),
      startTime: now(),
      steps,
    });
  }

  /**
   * A Rebuild makes sure of its image before it touches the guest: a changed Image or a failed
   * download refuses it with the guest as it was.
   */
  private async imageRefusal(c: StepContext, a: InstanceActionObject) {
    if (a.spec.action !== 'Rebuild') return undefined;
    try {
      await recordedBase(c);
      return undefined;
    } catch (err) {
      if (!(err instanceof BuildFault)) throw err;
      return { reason: err.reason, message: err.message };
    }
  }

  /** The Instance's side of the end; the action's result follows once the power handler ran. */
  private finish(c: StepContext, a: InstanceActionObject, o: ActionOutcome): PhaseResult {
    this.settling.set(c.inst.metadata.uid, { action: a, outcome: o });
    const who = requester(a);
    // Stopped by request: the runStrategy must know it was no crash (RerunOnFailure keeps it off).
    const change: StatusChange =
      o.ok && a.spec.action === 'Stop'
        ? {
            phase: 'Stopped',
            powerState: 'Shutdown',
            conditions: [
              {
                type: ConditionType.Ready,
                status: 'False',
                reason: 'PoweredOff',
                message: `powered off by InstanceAction ${a.metadata.name}${who}`,
              },
            ],
          }
        : {};
    return { kind: 'continue', status: { ...change, task: null, action: null } };
  }

  private async setStep(a: InstanceActionObject, i: number, patch: Partial<ActionStep>) {
    const steps = (a.status?.steps ?? []).map((s, j) => (j === i ? { ...s, ...patch } : s));
    return this.write(a, { steps });
  }

  private async write(a: InstanceActionObject, status: ActionStatus) {
    const rv = a.metadata.resourceVersion as string;
    const written = (await this.patcher.mergeStatus(
      actionRef(a),
      rv,
      status,
    )) as InstanceActionObject;
    this.written.set(a.metadata.uid, written);
    return written;
  }

  /** The action as the informer or our last write has it; undefined once it is gone. */
  private current(a: InstanceActionObject): InstanceActionObject | undefined {
    const seen = this.source
      .list(a.metadata.namespace)
      .find((x) => x.metadata.uid === a.metadata.uid);
    return seen ? this.latest(seen) : undefined;
  }

  /** The newer of the informer's copy and our last write (dropped once the informer has it). */
  private latest(a: InstanceActionObject): InstanceActionObject {
    const ours = this.written.get(a.metadata.uid);
    if (!ours) return a;
    if (Number(a.metadata.resourceVersion) >= Number(ours.metadata.resourceVersion)) {
      this.written.delete(a.metadata.uid);
      return a;
    }
    return ours;
  }
}

class StepTimeout extends Error {
  constructor(elapsedMs: number) {
    super(`the step has not finished after ${Math.round(elapsedMs / 1000)}s`);
  }
}

const now = () => new Date().toISOString();

const requester = (a: InstanceActionObject) =>
  a.spec.requestedBy ? ` requested by ${a.spec.requestedBy}` : '';

/** libvirtd away (restarting, connection lost): nothing is known about the step yet. */
const unreachable = (err: unknown) =>
  [ErrorCode.SYSTEM_ERROR, ErrorCode.RPC, ErrorCode.NO_CONNECT, ErrorCode.INVALID_CONN].some(
    (code) => isLibvirtError(err, code),
  );

function failedStep(step: string, message = 'failed', timedOut = false): ActionOutcome {
  return {
    ok: false,
    reason: timedOut ? ActionReason.StepTimeout : ActionReason.StepFailed,
    message: `${step} failed: ${message}`,
  };
}

function summary(a: InstanceActionObject): string {
  const steps = a.status?.steps ?? [];
  const notes = steps.filter((s) => s.message).map((s) => `${s.name}: ${s.message}`);
  const took = (Date.now() - Date.parse(a.status?.startTime ?? now())) / 1000;
  const names = steps.map((s) => s.name).join(' → ');
  return `${names} done in ${took.toFixed(1)}s${notes.length ? ` (${notes.join('; ')})` : ''}`;
}
