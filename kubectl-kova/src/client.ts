// The API calls the plugin makes, against the cluster and namespace kubectl's global flags pick.
import { AuthenticationV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { loadKubeConfig } from '@kova/controller-kit';
import {
  GROUP,
  PLURAL,
  VERSION,
  type ActionSpec,
  type IInstance,
  type InstanceActionObject,
  API_VERSION,
} from '@kova/crds';
import type { Target } from './args.js';

export class Cluster {
  readonly namespace: string;
  private readonly api: CustomObjectsApi;

  constructor(
    readonly kc: KubeConfig,
    namespace?: string,
  ) {
    this.namespace =
      namespace || kc.getContextObject(kc.getCurrentContext())?.namespace || 'default';
    this.api = kc.makeApiClient(CustomObjectsApi);
  }

  /** Throws what the API server answers, e.g. NotFound when there is no such Instance. */
  async getInstance(name: string): Promise<IInstance> {
    return (await this.api.getNamespacedCustomObject({
      ...this.resource('Instance'),
      name,
    })) as IInstance;
  }

  /**
   * The username the API server authenticates this kubeconfig as (what `kubectl auth whoami`
   * shows): the only value of spec.requestedBy the admission policy lets through.
   */
  async whoami(): Promise<string> {
    const review = await this.kc.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
    });
    const username = review.status?.userInfo?.username;
    if (!username) throw new Error('the API server did not say who you are (SelfSubjectReview)');
    return username;
  }

  async createAction(spec: ActionSpec, generateName: string): Promise<InstanceActionObject> {
    return (await this.api.createNamespacedCustomObject({
      ...this.resource('InstanceAction'),
      body: {
        apiVersion: API_VERSION,
        kind: 'InstanceAction',
        metadata: { generateName },
        spec,
      },
    })) as InstanceActionObject;
  }

  async getAction(name: string): Promise<InstanceActionObject> {
    return (await this.api.getNamespacedCustomObject({
      ...this.resource('InstanceAction'),
      name,
    })) as InstanceActionObject;
  }

  /** The Instance's actions, selected by the server (the CRD's selectableFields). */
  async listActions(instance: string): Promise<InstanceActionObject[]> {
    const list = (await this.api.listNamespacedCustomObject({
      ...this.resource('InstanceAction'),
      fieldSelector: `spec.instance=${instance}`,
    })) as { items: InstanceActionObject[] };
    return list.items;
  }

  private resource(kind: 'Instance' | 'InstanceAction') {
    return { group: GROUP, version: VERSION, namespace: this.namespace, plural: PLURAL[kind] };
  }
}

/** The kubeconfig as kubectl would pick it: --kubeconfig, else $KUBECONFIG, else ~/.kube/config. */
export function connect(target: Target): Cluster {
  const kc = loadKubeConfig(target.kubeconfig);
  if (target.context) {
    if (!kc.getContextObject(target.context))
      throw new Error(`context "${target.context}" does not exist`);
    kc.setCurrentContext(target.context);
  }
  return new Cluster(kc, target.namespace);
}
