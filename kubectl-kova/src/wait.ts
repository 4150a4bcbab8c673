// Waiting for an action's result: a watch on that one object, resumed from where it stopped when
// the API server ends it, so every phase and step change is seen without polling.
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

/** The action goes on after the plugin stops waiting; the message says where to follow it. */
function timedOut(action: InstanceActionObject, timeoutMs: number): Error {
  return new Error(
    `timed out after ${timeoutMs / 1000}s waiting for ${actionRef(action)} to finish ` +
      `(phase: ${action.status?.phase ?? 'none yet'}); the action goes on, ` +
      `see kubectl kova actions ${action.spec.instance}`,
  );
}

const actionRef = (a: InstanceActionObject) => `instanceaction/${a.metadata.name}`;

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
  const deadline = Date.now() + timeoutMs;
  let current = created;
  let printed: string | undefined;
  const see = (a: InstanceActionObject) => {
    current = a;
    const line = progressLine(a);
    if (line && line !== printed) onProgress((printed = line));
  };
  see(created);
  for (;;) {
    if (isFinished(current.status?.phase)) return current;
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw timedOut(current, timeoutMs);
    const end = await watchUntilFinished(cluster, current, remaining, see);
    if (end === 'deleted') throw new Error(`${actionRef(current)} was deleted before it finished`);
    // The watch ended early (the API server closes watches, or the resourceVersion expired):
    // read the object afresh and watch on from its resourceVersion.
    if (end === 'ended') see(await cluster.getAction(current.metadata.name));
  }
}

type WatchEnd = 'finished' | 'deleted' | 'ended' | 'timeout';

function watchUntilFinished(
  cluster: Cluster,
  from: InstanceActionObject,
  timeoutMs: number,
  see: (a: InstanceActionObject) => void,
): Promise<WatchEnd> {
  const path = resourcePath({
    apiVersion: API_VERSION,
    kind: 'InstanceAction',
    plural: PLURAL.InstanceAction,
    namespace: cluster.namespace,
  });
  return new Promise((resolve, reject) => {
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
        if (isFinished(obj.status?.phase)) settle(() => resolve('finished'));
      },
      (err: unknown) => {
        // The API server refused the watch itself (e.g. Forbidden): that will not get better.
        const status = apiStatus(err);
        if (err && status !== undefined && status !== 410) settle(() => reject(err));
        else settle(() => resolve('ended'));
      },
    );
    started.catch((err: unknown) => settle(() => reject(err)));
  });
}
