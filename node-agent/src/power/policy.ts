// runStrategy as one pure decision: given what libvirt says about the domain, the strategy, the
// crash-restart backoff and any shutdown in progress, what the agent does next and what it
// reports. No I/O here, so every combination is unit-tested (policy.test.ts).
//
// Decisions worth knowing:
// - Halted stops the guest gracefully, then destroys it once the shutdown grace is over; the
//   stop never blocks a worker (the agent asks, requeues and looks again).
// - RerunOnFailure leaves a guest off when the guest itself shut down or a Stop action stopped
//   it; any other stop (crash, destroy, QEMU failure) is restarted. A domain the agent stopped
//   for Halted is started when the strategy changes to RerunOnFailure, whatever way it stopped:
//   the user asked it to run, and "how it stopped under Halted" (shutdown or destroy after the
//   grace) must not decide.
// - Manual starts and stops nothing: the guest's power is what InstanceActions and the guest
//   itself made it.
// - A guest that suspended itself (PMSUSPENDED, S3/S4) is reported Suspended and left alone:
//   starting it fails with OPERATION_INVALID, and only the guest (or Halted) ends it.
// - Restarts back off while a domain keeps crashing: the first two of a streak at once, then
//   2, 4, 8… s up to 60 s; a streak ends when the domain stayed up for a minute.
import type { Phase, PowerState, RunStrategy } from '@kova/crds';
import { DomainState, ShutoffReason } from '../libvirt/constants.js';

export type { RunStrategy } from '@kova/crds';

/**
 * Why the agent keeps a domain off, as its Ready reason says: Halted (runStrategy), or
 * PoweredOff (a Stop action). Neither is a failure, so a start it asks for has no backoff.
 */
export type HeldOff = 'Halted' | 'PoweredOff' | undefined;

export interface Backoff {
  count: number;
  lastRestartMs: number;
}

export interface PowerInput {
  state: number;
  reason: number;
  strategy: RunStrategy;
  /** The agent stopped the domain, or kept it off, for Halted or a Stop action. */
  heldOff: HeldOff;
  backoff: Backoff | undefined;
  /** When the agent asked the guest to shut down for Halted, if it did. */
  shutdownRequestedMs: number | undefined;
  shutdownGraceMs: number;
  now: number;
}

export interface PowerReport {
  phase: Extract<Phase, 'Active' | 'Stopped'>;
  power: PowerState;
  ready: boolean;
  reason: string;
  message: string;
}

export type PowerAction =
  /** Nothing to do: the domain is where the strategy wants it. */
  | { kind: 'none'; report: PowerReport }
  /** Ask the guest to shut down (ACPI), then look again. */
  | { kind: 'shutdown'; report: PowerReport; requeueAfterMs: number }
  /** Pull the plug: the grace is over or the guest cannot shut down itself. */
  | { kind: 'destroy'; report: PowerReport; requeueAfterMs: number }
  /** A shutdown is in progress; look again later. */
  | { kind: 'wait'; report: PowerReport | undefined; requeueAfterMs: number }
  /** Start the stopped domain; `backoff` is the streak to record (undefined clears it). */
  | { kind: 'start'; report: PowerReport; backoff: Backoff | undefined; stopReason: string }
  /** Restart later: the domain keeps crashing. */
  | { kind: 'backoff'; report: PowerReport; requeueAfterMs: number };

export const CRASH_WINDOW_MS = 60_000;
export const MAX_RESTART_DELAY_MS = 60_000;

/** The wait before the restart after `streak` restarts: none for two, then 2, 4, 8… s. */
function delayOf(streak: number): number {
  return streak < 2 ? 0 : Math.min(1000 * 2 ** (streak - 1), MAX_RESTART_DELAY_MS);
}
export const POLL_MS = 1000;

const RUNNING: ReadonlySet<number> = new Set([
  DomainState.RUNNING,
  DomainState.BLOCKED,
  DomainState.PAUSED,
]);

export function decidePower(i: PowerInput): PowerAction {
  if (i.strategy === 'Halted') return halted(i);
  if (RUNNING.has(i.state)) return { kind: 'none', report: runningReport(i.state) };
  if (i.strategy === 'Manual' && i.state !== DomainState.PMSUSPENDED) return manual(i);
  if (i.state === DomainState.SHUTDOWN)
    return { kind: 'wait', report: undefined, requeueAfterMs: POLL_MS };
  if (i.state === DomainState.PMSUSPENDED)
    return {
      kind: 'none',
      report: {
        phase: 'Active',
        power: 'Suspended',
        ready: false,
        reason: 'Suspended',
        message:
          'the guest suspended itself (ACPI S3/S4); wake it from inside or set runStrategy Halted',
      },
    };
  if (i.state === DomainState.NOSTATE)
    return {
      kind: 'wait',
      report: {
        phase: 'Active',
        power: 'NoState',
        ready: false,
        reason: 'NoState',
        message: 'libvirt reports no state for the domain',
      },
      requeueAfterMs: POLL_MS,
    };
  return stopped(i);
}

function halted(i: PowerInput): PowerAction {
  const off: PowerReport = {
    phase: 'Stopped',
    power: 'Shutdown',
    ready: false,
    reason: 'Halted',
    message: 'runStrategy is Halted',
  };
  if (i.state === DomainState.SHUTOFF) return { kind: 'none', report: off };
  const stopping: PowerReport = {
    phase: 'Active',
    power: i.state === DomainState.SHUTDOWN ? 'Shutdown' : runningReport(i.state).power,
    ready: false,
    reason: 'Stopping',
    message: 'runStrategy is Halted; shutting the guest down',
  };
  // A suspended, crashed or stateless guest cannot answer the power button.
  if (!RUNNING.has(i.state) && i.state !== DomainState.SHUTDOWN)
    return { kind: 'destroy', report: off, requeueAfterMs: POLL_MS };
  if (i.shutdownRequestedMs === undefined)
    return { kind: 'shutdown', report: stopping, requeueAfterMs: POLL_MS };
  if (i.now - i.shutdownRequestedMs >= i.shutdownGraceMs)
    return { kind: 'destroy', report: off, requeueAfterMs: POLL_MS };
  return { kind: 'wait', report: stopping, requeueAfterMs: POLL_MS };
}

/** Manual: a stopped domain stays as it is; the report says how it got there. */
function manual(i: PowerInput): PowerAction {
  if (i.state === DomainState.SHUTDOWN || i.state === DomainState.NOSTATE)
    return { kind: 'wait', report: undefined, requeueAfterMs: POLL_MS };
  const power: PowerState = i.state === DomainState.CRASHED ? 'Crashed' : 'Shutdown';
  const how =
    i.heldOff === 'PoweredOff'
      ? 'a Stop action powered it off'
      : `the domain stopped (${shutoffReasonName(i.reason)})`;
  return {
    kind: 'none',
    report: {
      phase: 'Stopped',
      power,
      ready: false,
      reason: i.heldOff ?? (i.reason === ShutoffReason.SHUTDOWN ? 'GuestShutdown' : 'Stopped'),
      message: `${how}; runStrategy Manual leaves it off until a Start action (kubectl kova start)`,
    },
  };
}

/** RerunOnFailure leaves off a guest that shut itself down, or that a Stop action stopped. */
function leftOff(i: PowerInput): PowerAction | undefined {
  if (i.strategy !== 'RerunOnFailure' || i.state !== DomainState.SHUTOFF) return undefined;
  const stoppedBy =
    i.heldOff === 'PoweredOff'
      ? { reason: 'PoweredOff', by: 'a Stop action powered it off' }
      : !i.heldOff && i.reason === ShutoffReason.SHUTDOWN
        ? { reason: 'GuestShutdown', by: 'the guest shut itself down' }
        : undefined;
  if (!stoppedBy) return undefined;
  return {
    kind: 'none',
    report: {
      phase: 'Stopped',
      power: 'Shutdown',
      ready: false,
      reason: stoppedBy.reason,
      message: `${stoppedBy.by}; runStrategy RerunOnFailure leaves it off`,
    },
  };
}

function stopped(i: PowerInput): PowerAction {
  const why = shutoffReasonName(i.reason);
  const off = leftOff(i);
  if (off) return off;
  const power: PowerState = i.state === DomainState.CRASHED ? 'Crashed' : 'Shutdown';
  if (i.heldOff)
    return {
      kind: 'start',
      report: {
        phase: 'Stopped',
        power,
        ready: false,
        reason: 'Starting',
        message: `runStrategy ${i.strategy}: starting the domain`,
      },
      backoff: undefined,
      stopReason: i.heldOff.toLowerCase(),
    };
  // Time since the last restart includes our own wait before it ran: a streak ends only when
  // the domain stayed up for the crash window beyond the delay it was due, so a crash loop at
  // the cap stays at the cap instead of starting over.
  const due = i.backoff ? delayOf(i.backoff.count) : 0;
  const stayedUp = !i.backoff || i.now - i.backoff.lastRestartMs >= CRASH_WINDOW_MS + due;
  const streak = stayedUp ? 0 : (i.backoff?.count ?? 0);
  const delay = delayOf(streak);
  const report: PowerReport = {
    phase: 'Active',
    power,
    ready: false,
    reason: 'Stopped',
    message: `the domain stopped (${why}); restarting per runStrategy ${i.strategy}`,
  };
  const waitMs = (i.backoff?.lastRestartMs ?? 0) + delay - i.now;
  if (delay > 0 && waitMs > 0) return { kind: 'backoff', report, requeueAfterMs: waitMs };
  return {
    kind: 'start',
    report,
    backoff: { count: streak + 1, lastRestartMs: i.now },
    stopReason: why,
  };
}

function runningReport(state: number): PowerReport {
  if (state === DomainState.PAUSED)
    return {
      phase: 'Active',
      power: 'Paused',
      ready: false,
      reason: 'Paused',
      message: 'the domain is paused',
    };
  return {
    phase: 'Active',
    power: 'Running',
    ready: true,
    reason: 'Running',
    message: 'the domain is running',
  };
}

export function shutoffReasonName(reason: number): string {
  const entry = Object.entries(ShutoffReason).find(([, v]) => v === reason);
  return (entry?.[0] ?? 'UNKNOWN').toLowerCase();
}
