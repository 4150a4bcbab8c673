// Waiting for an action's result, or for whatever else a verb waits for: a watch on that one
// object, resumed from where it stopped when the API server ends it, so every phase and step
// change is seen without polling.
import { Watch } from '@kubernetes/client-node';
import { apiStatus, resourcePath } from '@kova/controller-kit';
import {
  API_VERSION,
  isFinished,
  PLURAL,
  type ActionStep,
  type InstanceActionObject,
} from '@kova/crds';
import type { Cluster } from './client.js';
import { backoffMs, describeFailure, isTransient } from './transient.js';

/**
 * `what` completes "timed out after 5s waiting for instanceaction/x to …"; the last error says
 * why the action could not be seen, when the API server could not be reached.
 */
export function timedOut(
  seen: { action: InstanceActionObject; lastError?: string },
  timeoutMs: number,
  what: string,
): Error {
  const { action, lastError } = seen;
  return new Error(
    `timed out after ${timeoutMs / 1000}s waiting for ${actionRef(action)} to ${what} ` +
      `(phase: ${action.status?.phase ?? 'none yet'}${lastError ? `; last error: ${lastError}` : ''})`,
  );
}

export const actionRef = (a: InstanceActionObject) => `instanceaction/${a.metadata.name}`;

/** The progress line for an unfinished action, e.g. `instanceaction/x: Running: Shutdown`. */
function progressLine(a: InstanceActionObject): string | undefined {
  const phase = a.status?.phase;
  if (!phase || isFinished(phase)) return undefined;
  const step = latestStep(a.status?.steps ?? []);
  return `${actionRef(a)}: ${phase}${step ? `: ${describeStep(step)}` : ''}`;
}

/** The last step that has begun: the one in progress, or the one that just ended. */
const latestStep = (steps: readonly ActionStep[]) => steps.findLast((s) => s.phase !== 'Pending');

function describeStep(step: ActionStep): string {
  const where = step.phase === 'Running' ? step.name : `${step.name} ${step.phase}`;
  return step.message ? `${where} (${step.message})` : where;
}

/**
 * Resolves with the action once it Succeeded or Failed, calling `onProgress` with each new
 * progress line; rejects after `timeoutMs`.
 */
export async function waitForResult(
  cluster: Cluster,
  created: InstanceActionObject,
  timeoutMs: number,
  onProgress: (line: string) => void,
): Promise<InstanceActionObject> {
  const seen = await waitUntil(cluster, created, timeoutMs, finished, onProgress);
  if (seen.reached) return seen.action;
  // The action goes on after the plugin stops waiting; the message says where to follow it.
  throw new Error(
    `${timedOut(seen, timeoutMs, 'finish').message}; the action goes on, ` +
      `see kubectl kova actions ${created.spec.instance}`,
  );
}

const finished = (a: InstanceActionObject) => isFinished(a.status?.phase);

/**
 * Follows the action until `reached` holds for it, calling `onProgress` with each new progress
 * line; after `timeoutMs`, resolves with the action as last seen, `reached: false` and the last
 * transient failure, if one kept it from being seen. A `timeoutMs` of 0 reads the action once
 * (kubectl wait's "check once"). Failures that may go away (see isTransient) are retried with
 * backoff until then; a definite answer (the action's 404, a 403) ends it at once.
 */
export async function waitUntil(
  cluster: Cluster,
  created: InstanceActionObject,
  timeoutMs: number,
  reached: (a: InstanceActionObject) => boolean,
  onProgress: (line: string) => void = () => undefined,
): Promise<{ action: InstanceActionObject; reached: boolean; lastError?: string }> {
  const deadline = Date.now() + timeoutMs;
  let current = created;
  let printed: string | undefined;
  const see = (a: InstanceActionObject) => {
    current = a;
    const line = progressLine(a);
    if (line && line !== printed) onProgress((printed = line));
  };
  see(created);
  let mustRead = timeoutMs <= 0;
  let failures = 0;
  let lastError: string | undefined;
  const failed = (err: unknown) => {
    if (!isTransient(err)) throw err;
    failures++;
    lastError = describeFailure(err);
  };
  for (;;) {
    if (mustRead) {
      try {
        see(await cluster.getAction(current.metadata.name));
        mustRead = false;
        failures = 0;
        lastError = undefined;
      } catch (err) {
        failed(err);
      }
    }
    if (reached(current)) return { action: current, reached: true };
    const remaining = deadline - Date.now();
    if (remaining <= 0) return { action: current, reached: false, lastError };
    if (failures > 0) {
      await sleep(Math.min(backoffMs(failures), remaining));
      continue;
    }
    const end = await watchUntil(cluster, current, remaining, reached, see);
    if (end === 'deleted') throw new Error(`${actionRef(current)} was deleted before it finished`);
    // The watch ended early (the API server closes watches, or the resourceVersion expired, or
    // the connection broke): read the object afresh and watch on from its resourceVersion.
    if (end === 'ended') mustRead = true;
    else if (typeof end === 'object') {
      failed(end.error);
      mustRead = true;
    }
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** How a watch ended; `error` when it failed, which the caller judges (see isTransient). */
type WatchEnd = 'reached' | 'deleted' | 'ended' | 'timeout' | { error: unknown };

function watchUntil(
  cluster: Cluster,
  from: InstanceActionObject,
  timeoutMs: number,
  reached: (a: InstanceActionObject) => boolean,
  see: (a: InstanceActionObject) => void,
): Promise<WatchEnd> {
  const path = resourcePath({
    apiVersion: API_VERSION,
    kind: 'InstanceAction',
    plural: PLURAL.InstanceAction,
    namespace: cluster.namespace,
  });
  return new Promise((resolve) => {
    let settled = false;
    const settle = (finish: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void started.then(
        (w) => w.abort(),
        () => undefined,
      );
      finish();
    };
    const timer = setTimeout(() => settle(() => resolve('timeout')), timeoutMs);
    const started = new Watch(cluster.kc).watch(
      path,
      {
        fieldSelector: `metadata.name=${from.metadata.name}`,
        resourceVersion: from.metadata.resourceVersion,
      },
      (type: string, obj: InstanceActionObject) => {
        if (type === 'DELETED') return settle(() => resolve('deleted'));
        // ERROR carries a Status (410 Gone when the resourceVersion is too old), not the action.
        if (type === 'ERROR') return settle(() => resolve('ended'));
        see(obj);
        if (reached(obj)) settle(() => resolve('reached'));
      },
      (err: unknown) => {
        // 410 Gone: the resourceVersion is too old, which a fresh read mends.
        if (!err || apiStatus(err) === 410) settle(() => resolve('ended'));
        else settle(() => resolve({ error: err }));
      },
    );
    started.catch((err: unknown) => settle(() => resolve({ error: err })));
  });
}
