// Carries out the InstanceAction in flight on an Instance of this node (the operator accepted it
// and named this node). Runs inside the Instance's sync, in place of the power handler, so the
// runStrategy never fights an action (a reboot's shutdown is not "restarted"), and one sync per
// Instance at a time holds for actions too. Each look:
//   Accepted → checked against what libvirt says now (refused with a reason if it no longer
//     makes sense), planned (steps listed Pending), Running; the Instance shows the task;
//   Running  → the first unfinished step is started, or looked at until libvirt shows its
//     effect; a shutdown that outlasts the timeout powers off (Nova's soft → hard fallback);
//   done     → Succeeded or Failed with the step's error, an Event on the Instance, the task
//     cleared; the power handler then reports what the guest does now.
// Progress lives in the action's status, so a restarted agent resumes at the step it was in.
import { apiStatus, type Patcher } from '@kova/controller-kit';
import {
  actionRefusal,
  ActionReason,
  API_VERSION,
  ConditionType,
  PLURAL,
  taskOf,
  type ActionStatus,
  type ActionStep,
  type InstanceActionObject,
} from '@kova/crds';
import { planOf, stepDef } from '../actions/steps.js';
import type { StepContext } from '../build/step.js';
import { keyOf } from '../deps.js';
import { lookupDomain, powerStateOf } from '../domain-removal.js';
import { DomainState } from '../libvirt/index.js';
import { lv } from '../libvirt-call.js';
import { POLL_MS } from '../power/policy.js';
import type { StatusChange } from '../status.js';
import type { PhaseResult } from './result.js';

/** What the handler needs besides the step context: the actions this node was handed. */
export interface ActionSource {
  list(namespace?: string): readonly InstanceActionObject[];
}

type Outcome = { ok: true; message: string } | { ok: false; reason: string; message: string };

export class ActionHandler {
  /** Our last write of each action, until the informer shows it (a lagging view must not rerun a step). */
  private readonly written = new Map<string, InstanceActionObject>();

  constructor(
    private readonly source: ActionSource,
    private readonly patcher: Pick<Patcher, 'mergeStatus'>,
  ) {}

  /** The action in flight on this Instance here, if any. */
  inFlight(c: Pick<StepContext, 'inst'>): InstanceActionObject | undefined {
    const { namespace, name, uid } = c.inst.metadata;
    return this.source
      .list(namespace)
      .filter((a) => a.spec.instance === name && a.status?.instanceUID === uid)
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
      try {
        if (step.phase === 'Pending') {
          a = await this.setStep(a, i, { phase: 'Running', startTime: now() });
          await def.start(c);
        }
        if (await def.done(c)) {
          a = await this.setStep(a, i, { phase: 'Succeeded', completionTime: now() });
          continue;
        }
        const started = Date.parse((a.status?.steps?.[i] as ActionStep).startTime ?? '');
        if (!def.overdue || Date.now() - started < c.d.config.shutdownTimeoutMs)
          return { kind: 'complete', requeueAfterMs: POLL_MS };
        const message = await def.overdue(c);
        a = await this.setStep(a, i, { message });
      } catch (err) {
        if (apiStatus(err) !== undefined) throw err;
        const message = (err as Error).message;
        a = await this.setStep(a, i, { phase: 'Failed', completionTime: now(), message });
        return this.finish(c, a, failedStep(step.name, message));
      }
    }
  }

  /** Checks the action against libvirt's view, plans it and shows the task; undefined if refused. */
  private async begin(c: StepContext, a: InstanceActionObject) {
    const conn = await c.d.session.conn();
    const dom = await lv(c.d.metrics, 'lookupByUUID', () =>
      lookupDomain(conn, c.inst.metadata.uid),
    );
    const state = dom ? (await lv(c.d.metrics, 'getState', () => dom.getState())).state : undefined;
    const refusal = actionRefusal(a.spec, {
      name: c.inst.metadata.name,
      phase: c.inst.status?.phase,
      power: state === undefined ? undefined : powerStateOf(state),
      runStrategy: c.inst.spec.runStrategy,
    });
    if (refusal || !dom) {
      await this.finish(c, a, {
        ok: false,
        ...(refusal ?? {
          reason: 'DomainMissing',
          message: 'the domain is not defined on the node',
        }),
      });
      return undefined;
    }
    const running =
      state === DomainState.RUNNING ||
      state === DomainState.PAUSED ||
      state === DomainState.BLOCKED;
    const steps = planOf(a.spec, running).map((name): ActionStep => ({ name, phase: 'Pending' }));
    const task = taskOf(a.spec);
    await c.report({
      task,
      action: a.metadata.name,
      conditions: [
        {
          type: ConditionType.Ready,
          status: 'False',
          reason: task,
          message: `${a.spec.action} in progress (InstanceAction ${a.metadata.name})`,
        },
      ],
    });
    return this.write(a, {
      phase: 'Running',
      reason: 'Running',
      message: `${steps.map((s) => s.name).join(' → ')}`,
      startTime: now(),
      steps,
    });
  }

  private async finish(c: StepContext, a: InstanceActionObject, o: Outcome): Promise<PhaseResult> {
    const done = await this.write(a, {
      phase: o.ok ? 'Succeeded' : 'Failed',
      reason: o.ok ? ActionReason.Succeeded : o.reason,
      message: o.message,
      completionTime: now(),
    });
    const who = a.spec.requestedBy ? ` requested by ${a.spec.requestedBy}` : '';
    c.d.events.record(
      c.inst,
      o.ok ? 'Normal' : 'Warning',
      o.ok ? `${a.spec.action}Succeeded` : `${a.spec.action}Failed`,
      `InstanceAction ${done.metadata.name} (${a.spec.action}${who}): ${o.message}`,
    );
    c.d.logger.info('instance action finished', {
      instance: keyOf(c.inst),
      action: done.metadata.name,
      kind: a.spec.action,
      result: done.status?.phase,
      reason: done.status?.reason,
    });
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
                message: `powered off by InstanceAction ${done.metadata.name}${who}`,
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

  private async write(
    a: InstanceActionObject,
    status: ActionStatus,
  ): Promise<InstanceActionObject> {
    const ref = {
      apiVersion: API_VERSION,
      kind: 'InstanceAction',
      plural: PLURAL.InstanceAction,
      name: a.metadata.name,
      namespace: a.metadata.namespace,
    };
    const rv = a.metadata.resourceVersion as string;
    const written = (await this.patcher.mergeStatus(ref, rv, status)) as InstanceActionObject;
    this.written.set(a.metadata.uid, written);
    return written;
  }

  /** The newer of the informer's copy and our last write. */
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

const now = () => new Date().toISOString();

function failedStep(step: string, message: string): Outcome {
  return { ok: false, reason: ActionReason.StepFailed, message: `${step} failed: ${message}` };
}

function summary(a: InstanceActionObject): string {
  const steps = a.status?.steps ?? [];
  const notes = steps.filter((s) => s.message).map((s) => `${s.name}: ${s.message}`);
  const took = (Date.parse(now()) - Date.parse(a.status?.startTime ?? now())) / 1000;
  return `${steps.map((s) => s.name).join(' → ')} done in ${took.toFixed(1)}s${notes.length ? ` (${notes.join('; ')})` : ''}`;
}
