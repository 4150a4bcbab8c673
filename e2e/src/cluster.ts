// Where an e2e suite runs kova. By default a LocalKova on this machine (control plane,
// operator and the asked-for agents on the real libvirtd). With KOVA_E2E_KUBECONFIG set, the
// suite runs against that cluster instead, kova installed there (e.g. by e2e/kind/run.sh), and
// reaches its hypervisor nodes through KOVA_E2E_NODE_EXEC, a command prefix in which `{node}`
// names the node (`docker exec {node}` on kind).
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { apiStatus, loadKubeConfig, logger } from '@kova/controller-kit';
import { GROUP, VERSION, type IHypervisor, type IInstance } from '@kova/crds';
import { applyFile, LocalKova, until, type AgentSpec } from '@kova/hack';
import { execFile } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const run = promisify(execFile);

export interface Cluster {
  kubeconfigPath: string;
  /** The namespace this suite's objects live in; removed when the suite stops. */
  namespace: string;
  api: CustomObjectsApi;
  /** The hypervisor nodes, by name. */
  nodes: string[];
  libvirtUri: string;
  stateDirOf(node: string): string;
  /** Runs a command on a hypervisor node and returns its stdout; rejects on a non-zero exit. */
  onNode(node: string, argv: string[]): Promise<string>;
  apply(path: string): Promise<void>;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  /** Names the suite's namespace. */
  suite: string;
  /** Agents of the local stack (ignored against a given cluster, whose nodes are its own). */
  agents?: AgentSpec[];
  agentEnv?: Record<string, string>;
  operatorEnv?: Record<string, string>;
  /** Command prefix of the local stack's agents (see offline.ts). */
  agentPrefix?: string[];
}

export async function startCluster(opts: ClusterOptions): Promise<Cluster> {
  const given = process.env.KOVA_E2E_KUBECONFIG;
  return prepare(given ? await givenCluster(given, opts) : await localCluster(opts));
}

/** Always the local stack: for suites that also stop, kill and restart kova's processes. */
export async function startLocalCluster(opts: ClusterOptions): Promise<LocalCluster> {
  return prepare(await localCluster(opts));
}

export type LocalCluster = Cluster & { kova: LocalKova };

async function prepare<C extends Cluster>(cluster: C): Promise<C> {
  await createNamespace(cluster);
  for (const f of ['flavors.yaml', 'network.yaml']) await cluster.apply(join(root, 'examples', f));
  return cluster;
}

async function localCluster(opts: ClusterOptions): Promise<LocalCluster> {
  const kova = await LocalKova.start({
    log: logger(`e2e-${opts.suite}`),
    agents: opts.agents,
    agentEnv: opts.agentEnv,
    operatorEnv: opts.operatorEnv,
    agentPrefix: opts.agentPrefix,
  });
  const namespace = `e2e-${opts.suite}`;
  const api = loadKubeConfig(kova.kubeconfigPath).makeApiClient(CustomObjectsApi);
  return {
    kova,
    kubeconfigPath: kova.kubeconfigPath,
    namespace,
    api,
    get nodes() {
      return kova.nodes;
    },
    libvirtUri: 'qemu:///system',
    stateDirOf: (node) => kova.stateDirOf(node),
    onNode: async (_node, [cmd, ...args]) => (await run(cmd as string, args)).stdout,
    apply: async (path) =>
      void (await applyFile(path, { kubeconfigPath: kova.kubeconfigPath, namespace })),
    stop: async () => {
      await deleteInstances(api, namespace).finally(() => kova.stop());
      // Every agent here plugs the same host bridge; the last one gone takes it along.
      await run('ip', ['link', 'delete', 'dev', 'kova-br0']).catch(() => undefined);
    },
  };
}

async function givenCluster(kubeconfigPath: string, opts: ClusterOptions): Promise<Cluster> {
  const api = loadKubeConfig(kubeconfigPath).makeApiClient(CustomObjectsApi);
  const hypervisors = (await api.listClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: 'hypervisors',
  })) as { items: IHypervisor[] };
  const prefix = (process.env.KOVA_E2E_NODE_EXEC ?? '').split(' ').filter(Boolean);
  const namespace = `e2e-${opts.suite}`;
  return {
    kubeconfigPath,
    namespace,
    api,
    nodes: hypervisors.items.map((h) => h.metadata?.name as string),
    libvirtUri: process.env.KOVA_E2E_LIBVIRT_URI ?? 'qemu:///system',
    stateDirOf: () => process.env.KOVA_E2E_STATE_DIR ?? '/var/lib/kova',
    onNode: async (node, argv) => {
      const [cmd, ...args] = [...prefix.map((p) => p.replace('{node}', node)), ...argv];
      return (await run(cmd as string, args)).stdout;
    },
    apply: async (path) => void (await applyFile(path, { kubeconfigPath, namespace })),
    stop: async () => {
      await deleteInstances(api, namespace);
      await loadKubeConfig(kubeconfigPath)
        .makeApiClient(CoreV1Api)
        .deleteNamespace({ name: namespace });
    },
  };
}

/**
 * Deletes the suite's Instances and waits until their agents have removed them: stopping kova
 * leaves guests running (as a restart of kova must), so a suite cleans up before it stops.
 */
async function deleteInstances(api: CustomObjectsApi, namespace: string): Promise<void> {
  const ref = { group: GROUP, version: VERSION, plural: 'instances', namespace };
  const names = async () =>
    ((await api.listNamespacedCustomObject(ref)) as { items: IInstance[] }).items.map(
      (i) => i.metadata?.name as string,
    );
  for (const name of await names())
    await api.deleteNamespacedCustomObject({ ...ref, name }).catch(() => undefined);
  await until(
    `the Instances of ${namespace} to be gone`,
    async () => (await names()).length === 0,
    120_000,
    200,
  );
}

async function createNamespace(c: Cluster): Promise<void> {
  const core = loadKubeConfig(c.kubeconfigPath).makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name: c.namespace } } }).catch((err) => {
    if (apiStatus(err) !== 409) throw err;
  });
}
