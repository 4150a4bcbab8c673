// Applies kova's CRDs and example manifests the way `kubectl apply --server-side` would.
import {
  ApiextensionsV1Api,
  CustomObjectsApi,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { apiStatus, Applier, loadKubeConfig, type AppliedObject } from '@kova/controller-kit';
import { crdManifests, PLURAL } from '@kova/crds';
import { readFile } from 'node:fs/promises';
import { parseAllDocuments } from 'yaml';

const FIELD_MANAGER = 'kova-hack';

/**
 * Applies every CRD and waits until the API server serves them: Established, and a list
 * answered (right after establishing, the watch cache answers 429 "storage is
 * (re)initializing" for a moment).
 */
export async function applyCrds(kubeconfigPath?: string, timeoutMs = 30_000): Promise<void> {
  const kc = loadKubeConfig(kubeconfigPath);
  const applier = new Applier(kc, FIELD_MANAGER);
  const crds = (await crdManifests()) as unknown as AppliedObject[];
  for (const crd of crds) await applier.apply(crd, 'customresourcedefinitions');
  const api = kc.makeApiClient(ApiextensionsV1Api);
  const deadline = Date.now() + timeoutMs;
  for (const crd of crds) {
    const name = crd.metadata?.name as string;
    for (;;) {
      const current = await api.readCustomResourceDefinition({ name });
      if (current.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True'))
        break;
      if (Date.now() > deadline)
        throw new Error(`CRD ${name} was not Established within ${timeoutMs / 1000}s`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const objects = kc.makeApiClient(CustomObjectsApi);
  for (const crd of crds) {
    const spec = (crd as unknown as { spec: unknown }).spec as {
      group: string;
      names: { plural: string };
      versions: { name: string }[];
    };
    const list = {
      group: spec.group,
      version: spec.versions[0]?.name as string,
      plural: spec.names.plural,
    };
    while (!(await served(objects, list))) {
      if (Date.now() > deadline)
        throw new Error(`CRD ${crd.metadata?.name} was not served within ${timeoutMs / 1000}s`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function served(
  api: CustomObjectsApi,
  list: { group: string; version: string; plural: string },
): Promise<boolean> {
  try {
    await api.listClusterCustomObject({ ...list, limit: 1 });
    return true;
  } catch (err) {
    if (apiStatus(err) === 429) return false;
    throw err;
  }
}

export async function readManifests(path: string): Promise<AppliedObject[]> {
  const docs = parseAllDocuments(await readFile(path, 'utf8'));
  return docs.map((d) => d.toJS() as AppliedObject).filter((o) => o && o.kind);
}

/**
 * Applies every kova object of a YAML file, namespaced ones without a namespace into
 * `namespace` (as kubectl does); returns what the API server stored.
 */
export async function applyFile(
  path: string,
  opts: { kubeconfigPath?: string; namespace?: string } = {},
): Promise<KubernetesObject[]> {
  const applier = new Applier(loadKubeConfig(opts.kubeconfigPath), FIELD_MANAGER);
  const applied: KubernetesObject[] = [];
  for (const obj of await readManifests(path)) {
    if (NAMESPACED.has(obj.kind) && !obj.metadata.namespace)
      obj.metadata.namespace = opts.namespace ?? 'default';
    applied.push(await applier.apply(obj, pluralOf(obj.kind)));
  }
  return applied;
}

const NAMESPACED = new Set(['Instance', 'ServerGroup']);

function pluralOf(kind: string): string {
  const plural = (PLURAL as Record<string, string>)[kind];
  if (!plural) throw new Error(`${kind} is not a kova resource; apply it with kubectl`);
  return plural;
}
