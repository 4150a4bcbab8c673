// `kova-operator check-uninstall`: the chart's pre-delete hook (KubeVirt's
// BlockUninstallIfWorkloadsExist). Instances carry finalizers only kova lifts and run as domains
// only kova manages: uninstalling under them leaves deletes that never finish and guests nobody
// stops. So while any Instance exists the hook fails, and Helm deletes nothing.
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { apiMessage, isNotFound } from '@kova/controller-kit';
import { GROUP, PLURAL, VERSION, type InstanceObject } from '@kova/crds';

/** What a check subcommand prints, and whether it passed (exit status 0). */
export interface CheckResult {
  ok: boolean;
  message: string;
}

/** Instances named in the refusal; the rest are counted. */
const NAMED = 5;

export interface UninstallTarget {
  /** The Helm release and its namespace, for the commands the refusal suggests. */
  release: string;
  namespace: string;
}

export async function checkUninstall(
  kc: KubeConfig,
  target: UninstallTarget,
): Promise<CheckResult> {
  const helmTarget = `${target.release} -n ${target.namespace}`;
  let names: string[];
  try {
    names = await instanceNames(kc);
  } catch (err) {
    // No Instance CRD, no Instance: an uninstall after the CRDs were deleted must not be stuck.
    if (isNotFound(err))
      return { ok: true, message: 'nothing to guard: the Instance CRD is not installed' };
    return {
      ok: false,
      message: [
        `could not list Instances: ${apiMessage(err)}`,
        "Fix the hook's access to the API server, or uninstall with --no-hooks to skip this check:",
        `  helm uninstall ${helmTarget} --no-hooks`,
      ].join('\n'),
    };
  }
  if (names.length === 0) return { ok: true, message: 'no Instances exist: uninstall may go on' };
  const shown = names.slice(0, NAMED).join(', ') + (names.length > NAMED ? ', ...' : '');
  return {
    ok: false,
    message: [
      `refusing to uninstall kova: ${names.length} Instance(s) exist (${shown}).`,
      'Without kova their finalizers are never lifted and their guests keep running unmanaged.',
      'Delete them first, then the Networks, then uninstall:',
      '  kubectl delete instances --all -A --wait',
      '  kubectl delete networks --all --wait',
      `  helm uninstall ${helmTarget}`,
      `To uninstall and leave them: helm uninstall ${helmTarget} --no-hooks`,
    ].join('\n'),
  };
}

/** Every Instance in the cluster, as namespace/name, page by page. */
async function instanceNames(kc: KubeConfig): Promise<string[]> {
  const api = kc.makeApiClient(CustomObjectsApi);
  const names: string[] = [];
  let page: string | undefined;
  do {
    const list = (await api.listClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL.Instance,
      limit: 500,
      _continue: page,
    })) as { items: InstanceObject[]; metadata?: { _continue?: string } };
    names.push(...list.items.map((i) => `${i.metadata.namespace}/${i.metadata.name}`));
    page = list.metadata?._continue || undefined;
  } while (page);
  return names;
}
