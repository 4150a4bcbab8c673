// Applies kova's CRDs and example manifests the way `kubectl apply --server-side` would.
import type { KubernetesObject } from '@kubernetes/client-node';
import { Applier, ensureCrds, loadKubeConfig, type AppliedObject } from '@kova/controller-kit';
import { crdManifests, PLURAL } from '@kova/crds';
import { readFile } from 'node:fs/promises';
import { parseAllDocuments } from 'yaml';

const FIELD_MANAGER = 'kova-hack';

/** Applies every kova CRD and waits until the API server serves them. */
export async function applyCrds(kubeconfigPath?: string, timeoutMs = 30_000): Promise<void> {
  await ensureCrds(loadKubeConfig(kubeconfigPath), await crdManifests(), {
    fieldManager: FIELD_MANAGER,
    timeoutMs,
  });
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
