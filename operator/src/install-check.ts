// `kova-operator check-install`: what the chart's `helm test` Pod runs. An installed kova serves
// every kind of compute.kova.dev and has an operator leading, renewing its Lease; a release
// whose CRDs are missing or whose operators never won (or keep losing) the election fails.
import { CoordinationV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { apiMessage } from '@kova/controller-kit';
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

async function unservedKinds(kc: KubeConfig): Promise<string[]> {
  const api = kc.makeApiClient(CustomObjectsApi);
  const problems: string[] = [];
  for (const plural of Object.values(PLURAL)) {
    try {
      await api.listClusterCustomObject({ group: GROUP, version: VERSION, plural, limit: 1 });
    } catch (err) {
      problems.push(`${plural}.${GROUP} is not served: ${apiMessage(err)}`);
    }
  }
  return problems;
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
    return [`no operator leads: ${where}: ${apiMessage(err)}`];
  }
  if (!spec?.holderIdentity) return [`no operator leads: ${where} has no holder`];
  const durationMs = (spec.leaseDurationSeconds ?? 0) * 1000;
  const age = Date.now() - new Date(spec.renewTime ?? 0).getTime();
  // Twice the duration: the leader's clock and this Pod's may differ a little.
  if (!(age <= 2 * durationMs))
    return [`the operator leader ${spec.holderIdentity} stopped renewing ${where}`];
  return [];
}
