import { readdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

export * from './generated/compute.kova.dev/v1alpha1/index.js';

export const GROUP = 'compute.kova.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

/** Plural resource names, as used in API paths. */
export const PLURAL = {
  Instance: 'instances',
  Flavor: 'flavors',
  Image: 'images',
  Network: 'networks',
  ServerGroup: 'servergroups',
  Hypervisor: 'hypervisors',
  IPBlock: 'ipblocks',
  InstanceAction: 'instanceactions',
} as const;

export type KovaKind = keyof typeof PLURAL;

/** Where server-side apply and merge patches address an Instance. */
export function instanceRef(inst: { metadata: { name: string; namespace: string } }) {
  return {
    apiVersion: API_VERSION,
    kind: 'Instance',
    plural: PLURAL.Instance,
    name: inst.metadata.name,
    namespace: inst.metadata.namespace,
  };
}

/** Where merge patches address an InstanceAction. */
export function actionRef(a: { metadata: { name: string; namespace: string } }) {
  return {
    apiVersion: API_VERSION,
    kind: 'InstanceAction',
    plural: PLURAL.InstanceAction,
    name: a.metadata.name,
    namespace: a.metadata.namespace,
  };
}

/** Directory holding the CRD YAML files (the source of truth). */
export const crdDir = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The CustomResourceDefinitions as objects, ready to apply. */
export async function crdManifests(): Promise<Record<string, unknown>[]> {
  const files = (await readdir(crdDir)).filter((f) => f.endsWith('.yaml')).sort();
  const texts = await Promise.all(files.map((f) => readFile(join(crdDir, f), 'utf8')));
  return texts.flatMap((t) => parseAllDocuments(t).map((d) => d.toJS() as Record<string, unknown>));
}
export * from './contract.js';
export * from './bound-record.js';
export * from './actions.js';
