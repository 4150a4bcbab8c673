// Applies kova's CRDs, its admission policies and example manifests the way
// `kubectl apply --server-side` would.
import type { KubernetesObject } from '@kubernetes/client-node';
import { Applier, ensureCrds, loadKubeConfig, type AppliedObject } from '@kova/controller-kit';
import { crdManifests, PLURAL } from '@kova/crds';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

const FIELD_MANAGER = 'kova-hack';

/** Applies every kova CRD and waits until the API server serves them. */
export async function applyCrds(kubeconfigPath?: string, timeoutMs = 30_000): Promise<void> {
  await ensureCrds(loadKubeConfig(kubeconfigPath), await crdManifests(), {
    fieldManager: FIELD_MANAGER,
    timeoutMs,
  });
}

/** The chart's plain policy files (the chart adds only its labels), for a stack without Helm. */
const POLICY_DIR = resolve(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'charts',
  'kova',
  'files',
);
const POLICY_PLURAL: Record<string, string> = {
  ValidatingAdmissionPolicy: 'validatingadmissionpolicies',
  ValidatingAdmissionPolicyBinding: 'validatingadmissionpolicybindings',
};

/** Applies the admission policies every kova install has (e.g. kova-action-requester). */
export async function applyPolicies(kubeconfigPath?: string): Promise<void> {
  const applier = new Applier(loadKubeConfig(kubeconfigPath), FIELD_MANAGER);
  for (const f of (await readdir(POLICY_DIR)).filter((n) => n.endsWith('.yaml')).sort())
    for (const obj of await readManifests(join(POLICY_DIR, f)))
      await applier.apply(obj, POLICY_PLURAL[obj.kind] as string);
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
