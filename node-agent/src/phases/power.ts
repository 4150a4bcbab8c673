// Active and Stopped: keep the domain's power state true to runStrategy (the decision is
// power/policy.ts; this carries it out), and respawn a domain that vanished from the node.
import { apiStatus } from '@kova/controller-kit';
import { ConditionType, type InstanceStatus } from '@kova/crds';
import { respawnPlan } from '../build/plans.js';
import { waitRunning } from '../build/steps.js';
import { runSteps, type StepContext } from '../build/step.js';
import { keyOf } from '../deps.js';
import { lookupDomain } from '../domain-removal.js';
import { BuildFault } from '../errors.js';
import type { Domain } from '../libvirt/index.js';
import { lv, tolerateInvalid } from '../libvirt-call.js';
import { decidePower, type Backoff, type HeldOff, type PowerReport } from '../power/policy.js';
import type { StatusChange } from '../status.js';
import type { PhaseResult } from './result.js';

/** A respawn that failed is tried again after this long (it is not a build: no fault, no undo). */
export const RESPAWN_RETRY_MS = 30_000;

export class PowerHandler {
  /** When the agent asked a guest to shut down; in memory: a restarted agent asks again. */
  private readonly shutdownRequested = new Map<string, number>();

  async handle(c: StepContext): Promise<PhaseResult> {
    const conn = await c.d.session.conn();
    const dom = await lv(c.d.metrics, 'lookupByUUID', () =>
      lookupDomain(conn, c.inst.metadata.uid),
    );
    if (!dom) return this.respawn(c);
    const uid = c.inst.metadata.uid;
    const { state, reason } = await lv(c.d.metrics, 'getState', () => dom.getState());
    const action = decidePower({
      state,
      reason,
      strategy: c.inst.spec.runStrategy ?? 'Always',
      heldOff: heldOffOf(c.inst.status),
      backoff: backoffOf(c.inst.status),
      shutdownRequestedMs: this.shutdownRequested.get(uid),
      shutdownGraceMs: c.d.config.shutdownTimeoutMs,
      now: Date.now(),
    });
    switch (action.kind) {
      case 'none':
        this.shutdownRequested.delete(uid);
        return { kind: 'update', status: reported(c, action.report) };
      case 'wait':
        return action.report
          ? {
              kind: 'update',
              status: reported(c, action.report),
              requeueAfterMs: action.requeueAfterMs,
            }
          : { kind: 'complete', requeueAfterMs: action.requeueAfterMs };
      case 'backoff':
        return {
          kind: 'update',
          status: reported(c, action.report),
          requeueAfterMs: action.requeueAfterMs,
        };
      case 'shutdown':
        await tolerateInvalid(lv(c.d.metrics, 'shutdown', () => dom.shutdown()));
        this.shutdownRequested.set(uid, Date.now());
        return {
          kind: 'update',
          status: reported(c, action.report),
          requeueAfterMs: action.requeueAfterMs,
        };
      case 'destroy':
        await tolerateInvalid(lv(c.d.metrics, 'destroy', () => dom.destroy()));
        this.shutdownRequested.delete(uid);
        return {
          kind: 'update',
          status: reported(c, action.report),
          requeueAfterMs: action.requeueAfterMs,
        };
      case 'start':
        return this.start(c, dom, action.report, action.backoff, action.stopReason);
    }
  }

  /**
   * Restarts the domain. The guest comes first: the stop is reported and the backoff recorded
   * before the start, but with the API server unreachable the guest is started anyway.
   */
  private async start(
    c: StepContext,
    dom: Domain,
    report: PowerReport,
    backoff: Backoff | undefined,
    stopReason: string,
  ): Promise<PhaseResult> {
    const restartBackoff = backoff
      ? { count: backoff.count, lastRestartTime: new Date(backoff.lastRestartMs).toISOString() }
      : null;
    await c.report({ ...reported(c, report), restartBackoff }).catch((err: Error) => {
      // A 409 is a concurrent write (a spec change): the sync after the start reports again.
      const log = apiStatus(err) === 409 ? c.d.logger.debug : c.d.logger.warn;
      log('could not report the stopped domain; restarting it anyway', {
        instance: keyOf(c.inst),
        error: err,
      });
    });
    if (backoff) c.d.metrics.restarts.inc({ reason: stopReason });
    // After a node reboot the managed bridges and kova's guard rules are gone: plug first.
    const interfaces = c.inst.status?.interfaces ?? [];
    await c.d.host.plugNetworks(c.inst.metadata.uid, interfaces, (n) => c.d.networks.get(n));
    // A lifecycle event and the resync can both get here; the second finds it running already.
    await tolerateInvalid(lv(c.d.metrics, 'create', () => dom.create()));
    await waitRunning(c, dom);
    return {
      kind: 'update',
      status: {
        ...reported(c, {
          phase: 'Active',
          power: 'Running',
          ready: true,
          reason: 'Running',
          message: 'the domain is running',
        }),
        restartBackoff,
      },
    };
  }

  /** The domain vanished: define it again around its disks (never new ones), start unless Halted. */
  private async respawn(c: StepContext): Promise<PhaseResult> {
    c.d.logger.warn('domain missing; defining it again', { instance: keyOf(c.inst) });
    await c.report({
      conditions: [
        {
          type: ConditionType.Ready,
          status: 'False',
          reason: 'DomainMissing',
          message: 'the domain vanished from the node; defining it again',
        },
      ],
    });
    try {
      await runSteps(respawnPlan(c.inst), c);
    } catch (err) {
      if (!(err instanceof BuildFault)) throw err;
      c.d.events.record(c.inst, 'Warning', err.reason, err.message);
      return {
        kind: 'update',
        status: {
          conditions: [
            {
              type: ConditionType.Ready,
              status: 'False',
              reason: err.reason,
              message: `respawning the domain failed: ${err.message}`,
            },
          ],
        },
        requeueAfterMs: RESPAWN_RETRY_MS,
      };
    }
    // Look again: the power handler reports what the new domain is doing.
    return { kind: 'continue', status: { domainUUID: c.inst.metadata.uid } };
  }
}

function reported(c: StepContext, r: PowerReport): StatusChange {
  const prior = readyReason(c.inst.status);
  if (prior !== r.reason)
    c.d.events.record(c.inst, r.ready ? 'Normal' : 'Warning', r.reason, r.message);
  return {
    phase: r.phase,
    powerState: r.power,
    // The power handler runs only when no action is in flight: a task left by one is over.
    task: null,
    action: null,
    observedGeneration: c.inst.metadata.generation,
    conditions: [
      {
        type: ConditionType.Ready,
        status: r.ready ? 'True' : 'False',
        reason: r.reason,
        message: r.message,
      },
    ],
  };
}

function heldOffOf(s: InstanceStatus | undefined): HeldOff {
  const reason = readyReason(s);
  return reason === 'Halted' || reason === 'PoweredOff' ? reason : undefined;
}

function readyReason(s: InstanceStatus | undefined): string | undefined {
  return s?.conditions?.find((x) => x.type === ConditionType.Ready)?.reason;
}

function backoffOf(s: InstanceStatus | undefined): Backoff | undefined {
  const b = s?.restartBackoff;
  return b ? { count: b.count, lastRestartMs: Date.parse(b.lastRestartTime) } : undefined;
}
