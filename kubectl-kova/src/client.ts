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

/** kubectl says a kubeconfig problem as `Error in configuration: …`, not `error: …`. */
export class ConfigurationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigurationError';
  }
}

/**
 * The kubeconfig as kubectl would pick it (--kubeconfig, else $KUBECONFIG, else ~/.kube/config)
 * and the context, cluster and user in it, with what kubectl's global flags override; refused in
 * kubectl's words.
 */
export function connect(target: Target): Cluster {
  const kc = loadKubeConfig(target.kubeconfig);
  const context = kc.getContextObject(target.context ?? kc.getCurrentContext());
  if (target.context && !context)
    throw new ConfigurationError(`context was not found for specified context: ${target.context}`);
  let cluster = kc.getCluster(target.cluster ?? context?.cluster ?? '');
  if (target.cluster && !cluster)
    throw new Error(`no server found for cluster "${target.cluster}"`);
  let user = kc.getUser(target.user ?? context?.user ?? '');
  if (target.user && !user) throw new Error(`auth info "${target.user}" does not exist`);
  if ((target.asGroups?.length ?? 0) > 0 && !target.as)
    throw new Error(
      `requesting uid, groups or user-extra for ${user?.name ?? ''} without impersonating a user`,
    );
  // A trailing slash (https://host:6443/) would double the one every API path starts with.
  const server = target.server?.replace(/\/+$/, '');
  if (server) cluster = { name: OVERRIDDEN, skipTLSVerify: false, ...cluster, server };
  if (target.certificateAuthority && cluster)
    cluster = { ...cluster, caData: undefined, caFile: target.certificateAuthority };
  // As kubectl: skipping the server's certificate check drops the CA the kubeconfig names.
  if (target.insecureSkipTlsVerify && cluster)
    cluster = { ...cluster, skipTLSVerify: true, caData: undefined, caFile: undefined };
  // The token replaces the user's credentials, as the one way to authenticate.
  if (target.token) user = { name: user?.name ?? OVERRIDDEN, token: target.token };
  kc.loadFromOptions({
    clusters: cluster ? [cluster] : [],
    users: user ? [user] : [],
    contexts: [
      {
        name: OVERRIDDEN,
        cluster: cluster?.name ?? '',
        user: user?.name ?? '',
        namespace: context?.namespace,
      },
    ],
    currentContext: OVERRIDDEN,
  });
  onEveryRequest(kc, target);
  return new Cluster(kc, target.namespace);
}

const OVERRIDDEN = 'kubectl-kova';

/**
 * Impersonation and --request-timeout on every request. client-node has no hook for either, so
 * the two ways it authenticates a request are wrapped: applyToFetchOptions for the watch,
 * applySecurityAuthentication for the API clients.
 */
function onEveryRequest(kc: KubeConfig, target: Target): void {
  const { as, asGroups = [], requestTimeoutMs } = target;
  if (as) {
    const toFetch = kc.applyToFetchOptions.bind(kc);
    kc.applyToFetchOptions = async (opts) => {
      const init = await toFetch(opts);
      // node-fetch's Headers, which sends each appended value on a line of its own.
      const headers = init.headers as Pick<Headers, 'set' | 'append'>;
      headers.set('Impersonate-User', as);
      for (const group of asGroups) headers.append('Impersonate-Group', group);
      return init;
    };
  }
  if (!as && !requestTimeoutMs) return;
  const authenticate = kc.applySecurityAuthentication.bind(kc);
  kc.applySecurityAuthentication = async (context) => {
    await authenticate(context);
    if (as) {
      context.setHeaderParam('Impersonate-User', as);
      // The API server takes one group per header line; the API clients' headers are a plain
      // object of strings, which node-fetch sends one line per key, merging keys that differ
      // only in case. So each group gets its own spelling of the name.
      asGroups.forEach((group, i) => context.setHeaderParam(headerSpelling(i), group));
    }
    if (requestTimeoutMs) context.setSignal(AbortSignal.timeout(requestTimeoutMs));
  };
}

/** `Impersonate-Group` with the letters' case following the bits of `n`, n from 0. */
function headerSpelling(n: number): string {
  let letter = 0;
  return [...'impersonate-group']
    .map((c) => (c === '-' ? c : n & (1 << letter++) ? c : c.toUpperCase()))
    .join('');
}
