// Where an e2e suite runs kova. By default a LocalKova on this machine: control plane,
// operator, and either one agent on the real libvirtd or, with `labNodes`, a node lab whose
// nodes are really apart (each its own namespaces, libvirtd, agent and state dir; see
// hack/lab/README.md): `onNode` then runs inside that node. Given a cluster (`given`, or
// KOVA_E2E_KUBECONFIG), the suite runs against it instead, kova installed there (by helm.test.ts
// or e2e/kind/run.sh), and reaches its hypervisor nodes through a command prefix in which
// `{node}` names the node (KOVA_E2E_NODE_EXEC: `docker exec {node}` on kind; none when the
// nodes are this machine).
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { apiStatus, loadKubeConfig, logger, type Logger } from '@kova/controller-kit';
import { GROUP, VERSION, type IHypervisor, type IInstance } from '@kova/crds';
import { applyFile, LocalKova, NodeLab, until } from '@kova/hack';
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
  /**
   * The local stack's hypervisors as lab nodes of these names instead of one agent on this
   * machine (ignored against a given cluster, whose nodes are its own).
   */
  labNodes?: string[];
  agentEnv?: Record<string, string>;
  operatorEnv?: Record<string, string>;
  /** Command prefix of the local stack's agents (see offline.ts). */
  agentPrefix?: string[];
  /** Run against this cluster; defaults to the one KOVA_E2E_* name, if any. */
  given?: GivenCluster;
}

/** A cluster kova is installed in, and how to reach its hypervisor nodes. */
export interface GivenCluster {
  kubeconfigPath: string;
  /** Command prefix that runs a command on a node, `{node}` naming it; none: this machine. */
  nodeExec?: string[];
  libvirtUri?: string;
  /** The agents' state directory (chart value agent.stateDir). */
  stateDir?: string;
}

function givenByEnv(): GivenCluster | undefined {
  const kubeconfigPath = process.env.KOVA_E2E_KUBECONFIG;
  if (!kubeconfigPath) return undefined;
  return {
    kubeconfigPath,
    nodeExec: (process.env.KOVA_E2E_NODE_EXEC ?? '').split(' ').filter(Boolean),
    libvirtUri: process.env.KOVA_E2E_LIBVIRT_URI,
    stateDir: process.env.KOVA_E2E_STATE_DIR,
  };
}

export async function startCluster(opts: ClusterOptions): Promise<Cluster> {
  const given = opts.given ?? givenByEnv();
  return prepare(given ? await givenCluster(given, opts) : await localCluster(opts));
}

/** Always the local stack: for suites that also stop, kill and restart kova's processes. */
export async function startLocalCluster(opts: ClusterOptions): Promise<LocalCluster> {
  return prepare(await localCluster(opts));
}

export type LocalCluster = Cluster & {
  kova: LocalKova;
  /** The node lab, when the suite asked for `labNodes`. */
  lab?: NodeLab;
};

async function prepare<C extends Cluster>(cluster: C): Promise<C> {
  await createNamespace(cluster);
  for (const f of ['flavors.yaml', 'network.yaml']) await cluster.apply(join(root, 'examples', f));
  return cluster;
}

async function localCluster(opts: ClusterOptions): Promise<LocalCluster> {
  const log = logger(`e2e-${opts.suite}`);
  const kova = await LocalKova.start({
    log,
    agents: opts.labNodes ? [] : undefined,
    agentEnv: opts.agentEnv,
    operatorEnv: opts.operatorEnv,
    agentPrefix: opts.agentPrefix,
  });
  const namespace = `e2e-${opts.suite}`;
  const api = loadKubeConfig(kova.kubeconfigPath).makeApiClient(CustomObjectsApi);
  const base = {
    kova,
    kubeconfigPath: kova.kubeconfigPath,
    namespace,
    api,
    libvirtUri: 'qemu:///system',
    apply: async (path: string) =>
      void (await applyFile(path, { kubeconfigPath: kova.kubeconfigPath, namespace })),
  };
  if (opts.labNodes) {
    const lab = await startLab(kova, opts, log);
    return {
      ...base,
      lab,
      nodes: lab.nodes.map((n) => n.name),
      stateDirOf: (node) => lab.node(node).stateDir,
      onNode: async (node, argv) => (await lab.exec(node, argv)).stdout,
      // A node's guests, bridges and rules live in its namespaces: stopping the lab ends them.
      stop: () =>
        deleteInstances(api, namespace).finally(() => lab.stop().finally(() => kova.stop())),
    };
  }
  return {
    ...base,
    get nodes() {
      return kova.nodes;
    },
    stateDirOf: (node) => kova.stateDirOf(node),
    onNode: async (_node, [cmd, ...args]) => (await run(cmd as string, args)).stdout,
    stop: async () => {
      await deleteInstances(api, namespace).finally(() => kova.stop());
      // The host's agent plugged the host's bridge; it stays after the agent is gone.
      await run('ip', ['link', 'delete', 'dev', 'kova-br0']).catch(() => undefined);
    },
  };
}

/** The lab's agents get the suite's agent settings and, as LocalKova's, the KVM probe kernel. */
async function startLab(kova: LocalKova, opts: ClusterOptions, log: Logger): Promise<NodeLab> {
  try {
    return await NodeLab.start({
      log,
      kubeconfigPath: kova.kubeconfigPath,
      nodes: opts.labNodes,
      agentEnv: { KOVA_KVM_PROBE_KERNEL: join(kova.guestDir, 'vmlinuz'), ...opts.agentEnv },
    });
  } catch (err) {
    await kova.stop();
    throw err;
  }
}

async function givenCluster(given: GivenCluster, opts: ClusterOptions): Promise<Cluster> {
  const { kubeconfigPath, nodeExec: prefix = [] } = given;
  const api = loadKubeConfig(kubeconfigPath).makeApiClient(CustomObjectsApi);
  const hypervisors = (await api.listClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: 'hypervisors',
  })) as { items: IHypervisor[] };
  const namespace = `e2e-${opts.suite}`;
  return {
    kubeconfigPath,
    namespace,
    api,
    nodes: hypervisors.items.map((h) => h.metadata?.name as string),
    libvirtUri: given.libvirtUri ?? 'qemu:///system',
    stateDirOf: () => given.stateDir ?? '/var/lib/kova',
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
