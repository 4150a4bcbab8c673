// Patches that must not act on a stale view: each carries the resourceVersion it was computed
// from, so the API server refuses it (409) when the object changed meanwhile.
import {
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import type { ObjectRef } from './apply.js';

export class Patcher {
  private readonly custom: CustomObjectsApi;

  constructor(
    kc: KubeConfig,
    readonly fieldManager: string,
  ) {
    this.custom = kc.makeApiClient(CustomObjectsApi);
  }

  /** Sets metadata.finalizers to exactly `finalizers`, if the object is still at resourceVersion. */
  async setFinalizers(
    ref: ObjectRef,
    resourceVersion: string,
    finalizers: string[],
  ): Promise<unknown> {
    return this.merge(ref, { metadata: { resourceVersion, finalizers } }, false);
  }

  /** JSON merge patch of metadata (labels, ownerReferences…), if still at resourceVersion. */
  async mergeMetadata(
    ref: ObjectRef,
    resourceVersion: string,
    metadata: Record<string, unknown>,
  ): Promise<unknown> {
    return this.merge(ref, { metadata: { ...metadata, resourceVersion } }, false);
  }

  /** JSON merge patch of the status subresource; null removes a field whoever owns it. */
  async mergeStatus(
    ref: ObjectRef,
    resourceVersion: string,
    status: Record<string, unknown>,
  ): Promise<unknown> {
    return this.merge(ref, { metadata: { resourceVersion }, status }, true);
  }

  private async merge(ref: ObjectRef, body: object, status: boolean): Promise<unknown> {
    const [group, version] = ref.apiVersion.split('/') as [string, string];
    const headers = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    const args = {
      group,
      version,
      plural: ref.plural,
      name: ref.name,
      body,
      fieldManager: this.fieldManager,
    };
    const c = this.custom;
    if (ref.namespace) {
      const n = { ...args, namespace: ref.namespace };
      return status
        ? c.patchNamespacedCustomObjectStatus(n, headers)
        : c.patchNamespacedCustomObject(n, headers);
    }
    return status
      ? c.patchClusterCustomObjectStatus(args, headers)
      : c.patchClusterCustomObject(args, headers);
  }
}
