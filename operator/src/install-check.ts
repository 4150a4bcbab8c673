// `kova-operator check-install`: what the chart's `helm test` Pod runs. An installed kova serves
// every kind of compute.kova.dev and has an operator leading, renewing its Lease; a release
// whose CRDs are missing or whose operators never won (or keep losing) the election fails.
import { CoordinationV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { apiMessage, isNotFound } from '@kova/controller-kit';
import { GROUP, PLURAL, VERSION } from '@kova/crds';
import type { CheckResult } from './uninstall-check.js';

/** The Lease the operators elect their leader on. */
export const LEADER_LEASE = 'kova-operator';

export interface InstallTarget {
  /** The release namespace, where the leader Lease is. */
  namespace: string;
  /** Right after an install the operators may still be electing: retry this long. */
  timeoutMs: number;
}

export async function checkInstall(kc: KubeConfig, target: InstallTarget): Promise<CheckResult> {
  const deadline = Date.now() + target.timeoutMs;
  for (;;) {
    const problems = [...(await unservedKinds(kc)), ...(await leaderProblems(kc, target))];
    if (problems.length === 0)
      return {
        ok: true,
        message: `kova is installed: ${Object.values(PLURAL).length} kinds served, an operator leads`,
      };
    if (Date.now() >= deadline) return { ok: false, message: problems.join('\n') };
    await new Promise((r) => setTimeout(r, 2000));
  }
}

/**
 * Discovery, not a list of each kind: it needs no rights (every authenticated user may read it),
 * so the helm test's ServiceAccount reads no Instance, and a served kind is one the API server
 * announces once its CRD is established.
 */
async function unservedKinds(kc: KubeConfig): Promise<string[]> {
  const groupVersion = `${GROUP}/${VERSION}`;
  let served: Set<string>;
  try {
    const list = await kc
      .makeApiClient(CustomObjectsApi)
      .getAPIResources({ group: GROUP, version: VERSION });
    served = new Set(list.resources.map((r) => r.name));
  } catch (err) {
    if (isNotFound(err)) return [`${groupVersion} is not served: no kova CRD is installed`];
    return [`could not discover ${groupVersion}: ${apiMessage(err)}`];
  }
  return Object.values(PLURAL)
    .filter((plural) => !served.has(plural))
    .map((plural) => `${plural}.${GROUP} is not served`);
}

async function leaderProblems(kc: KubeConfig, target: InstallTarget): Promise<string[]> {
  const where = `Lease ${target.namespace}/${LEADER_LEASE}`;
  let spec;
  try {
    const lease = await kc
      .makeApiClient(CoordinationV1Api)
      .readNamespacedLease({ name: LEADER_LEASE, namespace: target.namespace });
    spec = lease.spec;
  } catch (err) {
    if (isNotFound(err)) return [`no operator leads: ${where} does not exist`];
    return [`could not get ${where}: ${apiMessage(err)}`];
  }
  if (!spec?.holderIdentity) return [`no operator leads: ${where} has no holder`];
  const durationMs = (spec.leaseDurationSeconds ?? 0) * 1000;
  const age = Date.now() - new Date(spec.renewTime ?? 0).getTime();
  // Twice the duration: the leader's clock and this Pod's may differ a little.
  if (!(age <= 2 * durationMs))
    return [`the operator leader ${spec.holderIdentity} stopped renewing ${where}`];
  return [];
}
