// Handlers of the build phases: the hand-off from the operator (Networking with every address
// allocated), BlockDeviceMapping and Spawning. Each runs its plan, then names the next phase.
import { ConditionType } from '@kova/crds';
import { blockDevicesLines, buildUndoPlan, handoffPlan, spawnPlan } from '../build/plans.js';
import { nicsOf } from '../build/steps.js';
import {
  BuildAborted,
  runSideBySide,
  runSteps,
  type NodeStep,
  type StepContext,
} from '../build/step.js';
import { BuildFault } from '../errors.js';
import type { StatusChange } from '../status.js';
import { holdForCleanup } from './lifecycle.js';
import type { PhaseResult } from './result.js';

/**
 * Networking → BlockDeviceMapping → Spawning, the networks plugged while the block devices are
 * made (as Nova's build allocates networks while it maps block devices), and the node-cleanup
 * finalizer set meanwhile: it is on before anything is reported or the domain defined, so a
 * delete waits for the domain's removal (disks of an Instance deleted before it are the garbage
 * collector's). Phase BlockDeviceMapping is reported once plugged and held.
 */
export async function handoff(c: StepContext): Promise<PhaseResult> {
  const held = holdForCleanup(c);
  // Refused (the Instance changed, or is gone): the disk work stops at its next step.
  held.catch(() => (c.scratch.abandoned = true));
  const disks = runSideBySide(blockDevicesLines(), c);
  const settled = disks.then(
    () => undefined,
    () => undefined,
  );
  let plugged: PhaseResult;
  try {
    plugged = await guarded(c, ConditionType.NetworkReady, buildUndoPlan(), async () => {
      await runSteps(handoffPlan(), c);
      return { kind: 'continue', status: pluggedStatus(c) };
    });
    if (plugged.kind === 'continue') {
      c.inst = await held;
      if (!(await c.report(plugged.status))) plugged = { kind: 'complete' };
    }
  } finally {
    // No disk work outlives its sync, and a failed plug's undo never races it.
    await settled;
  }
  return plugged.kind === 'continue' ? disksMade(c, disks) : plugged;
}

function pluggedStatus(c: StepContext): StatusChange {
  const nics = nicsOf(c.inst.metadata.uid, c.inst.status?.interfaces ?? [], (n) =>
    c.d.networks.get(n),
  );
  return {
    phase: 'BlockDeviceMapping',
    buildStartedAt: new Date().toISOString(),
    conditions: [
      {
        type: ConditionType.NetworkReady,
        status: 'True',
        reason: 'Plugged',
        message: nics.map((n) => `${n.ip} on bridge ${n.bridge} (${n.tap})`).join(', '),
      },
    ],
  };
}

/** BlockDeviceMapping → Spawning (an agent restarted mid-build resumes here). */
export async function blockDevices(c: StepContext): Promise<PhaseResult> {
  c.inst = await holdForCleanup(c);
  return disksMade(c, runSideBySide(blockDevicesLines(), c));
}

function disksMade(c: StepContext, made: Promise<void>): Promise<PhaseResult> {
  return guarded(c, ConditionType.BlockDevicesReady, buildUndoPlan(), async () => {
    await made;
    return {
      kind: 'continue',
      status: {
        phase: 'Spawning',
        conditions: [
          {
            type: ConditionType.BlockDevicesReady,
            status: 'True',
            reason: 'DisksReady',
            message: `root overlay ${c.d.paths.instanceFile(c.inst.metadata.uid, 'root.qcow2')} on image ${c.inst.spec.image}`,
          },
        ],
      },
    };
  });
}

export async function spawn(c: StepContext): Promise<PhaseResult> {
  return guarded(c, ConditionType.Spawned, buildUndoPlan(), async () => {
    await runSteps(spawnPlan(c.inst), c);
    const uid = c.inst.metadata.uid;
    const generation = c.inst.metadata.generation;
    if (c.inst.spec.runStrategy === 'Halted')
      return {
        kind: 'continue',
        status: {
          phase: 'Stopped',
          powerState: 'Shutdown',
          domainUUID: uid,
          observedGeneration: generation,
          conditions: [
            {
              type: ConditionType.Spawned,
              status: 'True',
              reason: 'DomainDefined',
              message: 'domain defined; runStrategy Halted leaves it off',
            },
            {
              type: ConditionType.Ready,
              status: 'False',
              reason: 'Halted',
              message: 'runStrategy is Halted',
            },
          ],
        },
      };
    c.d.events.record(
      c.inst,
      'Normal',
      'Spawned',
      `domain of ${uid} running on ${c.d.config.nodeName}`,
    );
    return {
      kind: 'continue',
      status: {
        phase: 'Active',
        powerState: 'Running',
        domainUUID: uid,
        launchedAt: c.inst.status?.launchedAt ?? new Date().toISOString(),
        observedGeneration: generation,
        conditions: [
          {
            type: ConditionType.Spawned,
            status: 'True',
            reason: 'DomainStarted',
            message: 'domain started',
          },
          {
            type: ConditionType.Ready,
            status: 'True',
            reason: 'Running',
            message: 'the domain is running',
          },
        ],
      },
    };
  });
}

/**
 * Runs a build phase under the build's overall deadline (status.buildStartedAt + the agent's
 * build timeout); a build fault, including the timeout, becomes a failed result.
 */
async function guarded(
  c: StepContext,
  condition: string,
  undo: readonly NodeStep[],
  fn: () => Promise<PhaseResult>,
): Promise<PhaseResult> {
  try {
    return await withDeadline(c, fn);
  } catch (err) {
    if (err instanceof BuildAborted) return { kind: 'complete' };
    if (err instanceof BuildFault) return { kind: 'failed', fault: err, condition, undo };
    throw err;
  }
}

/** How long a timed-out build waits for its abandoned step before its undo may run. */
const ABANDONED_WAIT_MS = 60_000;
/** At most this long (a tenth of the timeout) for a phase that starts past the deadline. */
const DEADLINE_GRACE_MS = 30_000;

/**
 * Waits (bounded) for the step a timeout abandoned, so its undo does not race it (a domain
 * started after its disks were removed); its outcome no longer matters, but is logged.
 */
async function settleAbandoned(c: StepContext, work: Promise<unknown>): Promise<void> {
  const instance = `${c.inst.metadata.namespace}/${c.inst.metadata.name}`;
  const settled = work.then(
    () => undefined,
    (err: Error) =>
      c.d.logger.warn('step abandoned after the build timeout failed', { instance, error: err }),
  );
  let timer: NodeJS.Timeout | undefined;
  const waited = new Promise<void>((r) => (timer = setTimeout(r, ABANDONED_WAIT_MS)));
  await Promise.race([settled, waited]);
  clearTimeout(timer);
}

async function withDeadline(c: StepContext, fn: () => Promise<PhaseResult>): Promise<PhaseResult> {
  const started = Date.parse(c.inst.status?.buildStartedAt ?? '');
  if (Number.isNaN(started)) return fn();
  const limitMs = c.d.config.buildTimeoutMs;
  const timedOut = () =>
    new BuildFault(
      'BuildTimedOut',
      `the build did not finish within ${limitMs / 1000}s of the hand-off (KOVA_BUILD_TIMEOUT_SECONDS); another node may do better`,
      true,
    );
  // Past the deadline the phase still gets a short grace: a build whose work is done (a guest
  // already running when its Active write failed) finishes instead of being undone.
  const grace = Math.min(DEADLINE_GRACE_MS, limitMs / 10);
  const leftMs = Math.max(started + limitMs - Date.now(), grace);
  let timer: NodeJS.Timeout | undefined;
  let expired = false;
  const work = fn();
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          expired = true;
          c.scratch.abandoned = true;
          reject(timedOut());
        }, leftMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
    // The abandoned step keeps running until its own end; its outcome no longer matters, but it
    // is logged rather than left as an unhandled rejection.
    if (expired) await settleAbandoned(c, work);
  }
}
