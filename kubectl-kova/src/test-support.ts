// What the plugin's suites against the jest run's real API server share: a namespace of their own
// with Instances, kova's kova-action-requester admission policy, a ServiceAccount with only the
// rights the plugin needs and a kubeconfig for it, and the built plugin run as a child process.
// kova's operator and node agent do not run here: a suite writes each action's status in their
// place.
import { afterAll, afterEach, beforeAll } from '@jest/globals';
import {
  AdmissionregistrationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  RbacAuthorizationV1Api,
  type KubeConfig,
} from '@kubernetes/client-node';
import { loadKubeConfig } from '@kova/controller-kit';
import { GROUP, PLURAL, VERSION, type InstanceActionObject } from '@kova/crds';
import { applyPolicies, until } from '@kova/hack';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';

export const pluginDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const mainJs = join(pluginDir, 'dist', 'main.js');

export interface Running {
  child: ChildProcessWithoutNullStreams;
  exit: Promise<number | null>;
  stdout: () => string;
  stdoutBytes: () => Buffer;
  stderr: () => string;
}

export interface PluginFixture {
  ns: string;
  /** The ServiceAccount's username, as the API server authenticates it. */
  user: string;
  /** The admin's client for custom objects. */
  api: () => CustomObjectsApi;
  /** The ServiceAccount's kubeconfig, whose context names the namespace. */
  kubeconfig: () => string;
  /**
   * The plugin as a child process, with the ServiceAccount's kubeconfig; `wrap` turns its
   * command line into another that runs it (e.g. on a terminal).
   */
  start: (args: string[], wrap?: (argv: string[]) => string[]) => Running;
  run: (args: string[]) => Promise<{ code: number | null; stdout: string; stderr: string }>;
  actionsOf: (instance: string) => Promise<InstanceActionObject[]>;
  /** The one action the plugin created for `instance`, once it exists. */
  createdFor: (instance: string) => Promise<InstanceActionObject>;
  /** Writes the status as kova's operator and node agent would, through the status subresource. */
  setStatus: (name: string, status: InstanceActionObject['status']) => Promise<void>;
}

/**
 * Sets the suite up (beforeAll) and tears it down (afterAll), with `instances` created; the
 * ServiceAccount may open the consoles of `consoles` only.
 */
export function pluginFixture(
  prefix: string,
  instances: string[],
  consoles: string[] = [],
): PluginFixture {
  const ns = `${prefix}-${Math.random().toString(36).slice(2, 7)}`;
  const actions = { group: GROUP, version: VERSION, namespace: ns, plural: PLURAL.InstanceAction };
  let admin: KubeConfig;
  let api: CustomObjectsApi;
  let dir: string;
  let kubeconfig: string;
  let policyWasThere: boolean;
  const children = new Set<ChildProcessWithoutNullStreams>();

  const start = (args: string[], wrap = (argv: string[]) => argv): Running => {
    const [command, ...rest] = wrap([
      process.execPath,
      mainJs,
      ...args,
      '--kubeconfig',
      kubeconfig,
    ]);
    const child = spawn(command as string, rest);
    children.add(child);
    const stdout: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => stdout.push(d));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exit = new Promise<number | null>((r) =>
      child.on('close', (code) => (children.delete(child), r(code))),
    );
    const stdoutBytes = () => Buffer.concat(stdout);
    return {
      child,
      exit,
      stdout: () => stdoutBytes().toString(),
      stdoutBytes,
      stderr: () => stderr,
    };
  };

  const actionsOf = async (instance: string) => {
    const list = (await api.listNamespacedCustomObject({
      ...actions,
      fieldSelector: `spec.instance=${instance}`,
    })) as { items: InstanceActionObject[] };
    return list.items;
  };

  beforeAll(async () => {
    admin = loadKubeConfig();
    api = admin.makeApiClient(CustomObjectsApi);
    dir = await mkdtemp(join(tmpdir(), 'kubectl-kova-'));
    await admin.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: ns } } });
    kubeconfig = await serviceAccountKubeconfig(admin, ns, dir, consoles);
    for (const name of instances) await createInstance(api, ns, name);
    policyWasThere = await enforceRequesterPolicy(admin, api, ns);
  });

  afterEach(() => {
    // A test that failed half-way must not leave a waiting plugin behind.
    for (const child of children) child.kill();
  });

  afterAll(async () => {
    if (!policyWasThere) {
      const admission = admin.makeApiClient(AdmissionregistrationV1Api);
      await admission.deleteValidatingAdmissionPolicyBinding({ name: POLICY });
      await admission.deleteValidatingAdmissionPolicy({ name: POLICY });
    }
    await admin.makeApiClient(CoreV1Api).deleteNamespace({ name: ns });
    await rm(dir, { recursive: true, force: true });
  });

  return {
    ns,
    user: `system:serviceaccount:${ns}:${SERVICE_ACCOUNT}`,
    api: () => api,
    kubeconfig: () => kubeconfig,
    start,
    run: async (args) => {
      const p = start(args);
      const code = await p.exit;
      return { code, stdout: p.stdout(), stderr: p.stderr() };
    },
    actionsOf,
    createdFor: (instance) =>
      until(`an action for ${instance}`, async () => (await actionsOf(instance))[0]),
    setStatus: async (name, status) => {
      const current = (await api.getNamespacedCustomObject({ ...actions, name })) as object;
      await api.replaceNamespacedCustomObjectStatus({
        ...actions,
        name,
        body: { ...current, status },
      });
    },
  };
}

async function createInstance(api: CustomObjectsApi, ns: string, name: string): Promise<void> {
  await api.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: ns,
    plural: PLURAL.Instance,
    body: {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: 'Instance',
      metadata: { name },
      spec: { flavor: 'm1.small', image: 'ubuntu-24.04', networks: [{ network: 'default' }] },
    },
  });
}

const SERVICE_ACCOUNT = 'operator-on-call';

/**
 * A ServiceAccount that may read Instances, open the consoles of `consoles` and create and
 * follow InstanceActions, and a kubeconfig for it whose context names the namespace, as a user's
 * would.
 */
async function serviceAccountKubeconfig(
  admin: KubeConfig,
  ns: string,
  dir: string,
  consoles: string[],
): Promise<string> {
  const core = admin.makeApiClient(CoreV1Api);
  const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
  const name = SERVICE_ACCOUNT;
  await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name } } });
  await rbac.createNamespacedRole({
    namespace: ns,
    body: {
      metadata: { name },
      rules: [
        { apiGroups: [GROUP], resources: ['instances'], verbs: ['get'] },
        // The console rights kova-action-requester asks for before it lets a Console or
        // ConsoleLog action in.
        ...(consoles.length
          ? [
              { apiGroups: [GROUP], resources: ['instances/console'], verbs: ['create'] },
              { apiGroups: [GROUP], resources: ['instances/consolelog'], verbs: ['get'] },
            ].map((rule) => ({ ...rule, resourceNames: consoles }))
          : []),
        {
          apiGroups: [GROUP],
          resources: ['instanceactions'],
          verbs: ['create', 'get', 'list', 'watch'],
        },
      ],
    },
  });
  await rbac.createNamespacedRoleBinding({
    namespace: ns,
    body: {
      metadata: { name },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
      subjects: [{ kind: 'ServiceAccount', name, namespace: ns }],
    },
  });
  const { status } = await core.createNamespacedServiceAccountToken({
    name,
    namespace: ns,
    body: { spec: { audiences: [], expirationSeconds: 3600 } },
  });
  const cluster = admin.getCurrentCluster();
  if (!cluster || !status?.token) throw new Error('no cluster or token for the test kubeconfig');
  const path = join(dir, 'kubeconfig');
  const ca = cluster.caData
    ? { 'certificate-authority-data': cluster.caData }
    : { 'certificate-authority': cluster.caFile };
  await writeFile(
    path,
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      'current-context': 'on-call',
      clusters: [{ name: 'kova', cluster: { server: cluster.server, ...ca } }],
      users: [{ name, user: { token: status.token } }],
      contexts: [{ name: 'on-call', context: { cluster: 'kova', user: name, namespace: ns } }],
    }),
    { mode: 0o600 },
  );
  return path;
}

const POLICY = 'kova-action-requester';

/**
 * Applies kova's admission policies (a cluster-wide change, undone after the suite unless they
 * were there before) and waits until a new policy is enforced, which takes a moment. Returns
 * whether the policy was there before.
 */
async function enforceRequesterPolicy(
  admin: KubeConfig,
  api: CustomObjectsApi,
  ns: string,
): Promise<boolean> {
  const admission = admin.makeApiClient(AdmissionregistrationV1Api);
  const wasThere = await admission.readValidatingAdmissionPolicy({ name: POLICY }).then(
    () => true,
    () => false,
  );
  await applyPolicies();
  const impostor = () =>
    api.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural: PLURAL.InstanceAction,
      dryRun: 'All',
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'InstanceAction',
        metadata: { generateName: 'impostor-' },
        spec: { instance: 'web-1', action: 'Start', requestedBy: 'mallory' },
      },
    });
  await until('kova-action-requester to refuse requestedBy: mallory', () =>
    impostor().then(
      () => false,
      () => true,
    ),
  );
  return wasThere;
}
