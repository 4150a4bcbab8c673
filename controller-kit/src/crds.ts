// Applies CustomResourceDefinitions by server-side apply and waits until the API server serves
// them. Shared by the operator (which upgrades its own CRDs at start, since Helm never upgrades
// a chart's crds/) and the developer scripts that set up a local control plane.
import {
  ApiextensionsV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';
import { Applier, type AppliedObject } from './apply.js';
import { apiMessage, apiStatus, KovaError } from './errors.js';

export interface EnsureCrdsOptions {
  fieldManager: string;
  /**
   * Take over fields another manager set (Helm's first install, an older release): the caller
   * is the owner of these schemas by design.
   */
  force?: boolean;
  timeoutMs?: number;
}

type CrdObject = AppliedObject & Pick<V1CustomResourceDefinition, 'spec'>;

/**
 * Applies every CRD and waits until each is served: Established, and a list answered (right
 * after establishing, the watch cache answers 429 "storage is (re)initializing" for a moment).
 */
export async function ensureCrds(
  kc: KubeConfig,
  crds: Record<string, unknown>[],
  opts: EnsureCrdsOptions,
): Promise<void> {
  const applier = new Applier(kc, opts.fieldManager);
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  const objects = crds as unknown as CrdObject[];
  for (const crd of objects) {
    await applier.apply(crd, 'customresourcedefinitions', { force: opts.force }).catch((err) => {
      throw new KovaError(
        'CrdApplyFailed',
        `applying CRD ${crd.metadata.name} as ${opts.fieldManager} failed (HTTP ${apiStatus(err) ?? 'none'}): ${apiMessage(err)}; ` +
          'the applier needs create, get and patch on customresourcedefinitions',
        { cause: err },
      );
    });
  }
  for (const crd of objects) await waitEstablished(kc, crd.metadata.name, deadline);
  for (const crd of objects) await waitServed(kc, crd, deadline);
}

async function waitEstablished(kc: KubeConfig, name: string, deadline: number): Promise<void> {
  const api = kc.makeApiClient(ApiextensionsV1Api);
  for (;;) {
    const current = await api.readCustomResourceDefinition({ name });
    if (current.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True'))
      return;
    if (Date.now() > deadline)
      throw new KovaError('CrdNotEstablished', `CRD ${name} was not Established in time`);
    await sleep(100);
  }
}

async function waitServed(kc: KubeConfig, crd: CrdObject, deadline: number): Promise<void> {
  const api = kc.makeApiClient(CustomObjectsApi);
  const list = {
    group: crd.spec.group,
    version: crd.spec.versions[0]?.name as string,
    plural: crd.spec.names.plural,
    limit: 1,
  };
  for (;;) {
    try {
      await api.listClusterCustomObject(list);
      return;
    } catch (err) {
      if (apiStatus(err) !== 429) throw err;
    }
    if (Date.now() > deadline)
      throw new KovaError('CrdNotServed', `CRD ${crd.metadata.name} was not served in time`);
    await sleep(100);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
