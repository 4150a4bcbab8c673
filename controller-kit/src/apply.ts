// Writes by server-side apply under a named field manager: each component owns exactly the
// fields it sends, and the API server keeps the operator and the node agents from silently
// overwriting each other's fields. Bodies go out as plain JSON: client-node's typed
// serializer would drop fields it does not model (x-kubernetes-validations among them).
import {
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type KubernetesObject,
} from '@kubernetes/client-node';

export interface ObjectRef {
  apiVersion: string;
  kind: string;
  /** Plural resource name as in the API path, e.g. instances. */
  plural: string;
  name: string;
  namespace?: string;
}

/** Any object of a named API group (not the core v1 group). */
export interface AppliedObject extends KubernetesObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string } & NonNullable<KubernetesObject['metadata']>;
}

const applyHeaders = () => setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply);

export class Applier {
  private readonly custom: CustomObjectsApi;

  constructor(
    kc: KubeConfig,
    readonly fieldManager: string,
  ) {
    this.custom = kc.makeApiClient(CustomObjectsApi);
  }

  /**
   * Applies the fields of `obj` this manager owns (spec, labels…); creates it if absent. With
   * `force`, fields another manager set are taken over instead of refused (for objects this
   * manager owns by design, such as its own CRDs).
   */
  async apply<T extends AppliedObject>(
    obj: T,
    plural: string,
    opts: { force?: boolean } = {},
  ): Promise<T> {
    const ref = {
      apiVersion: obj.apiVersion,
      kind: obj.kind,
      plural,
      name: obj.metadata.name,
      namespace: obj.metadata.namespace,
    };
    return this.patch(ref, obj, false, opts.force ?? false);
  }

  /**
   * Applies `status` to the status subresource of an object. With `resourceVersion`, the API
   * server refuses the write (409) if the object changed since that version was read.
   */
  async applyStatus<T extends object>(
    ref: ObjectRef,
    status: object,
    resourceVersion?: string,
  ): Promise<T> {
    const body = {
      apiVersion: ref.apiVersion,
      kind: ref.kind,
      metadata: {
        name: ref.name,
        ...(ref.namespace ? { namespace: ref.namespace } : {}),
        ...(resourceVersion ? { resourceVersion } : {}),
      },
      status,
    };
    return this.patch(ref, body, true, false);
  }

  private async patch<T>(
    ref: ObjectRef,
    body: object,
    status: boolean,
    force: boolean,
  ): Promise<T> {
    const [group, version] = ref.apiVersion.split('/');
    if (!group || !version)
      throw new Error(`${ref.kind} is in the core API group; apply it with kubectl`);
    const common = {
      group,
      version,
      plural: ref.plural,
      name: ref.name,
      body,
      fieldManager: this.fieldManager,
      // Unless asked, never take a field another manager owns: that is a conflict (409) to
      // surface, not to paper over. Writers that share fields (Instance status) use merge
      // patches instead.
      force,
    };
    const c = this.custom;
    if (ref.namespace) {
      const args = { ...common, namespace: ref.namespace };
      return (
        status
          ? c.patchNamespacedCustomObjectStatus(args, applyHeaders())
          : c.patchNamespacedCustomObject(args, applyHeaders())
      ) as Promise<T>;
    }
    return (
      status
        ? c.patchClusterCustomObjectStatus(common, applyHeaders())
        : c.patchClusterCustomObject(common, applyHeaders())
    ) as Promise<T>;
  }
}
