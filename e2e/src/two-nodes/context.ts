// What every two-node scenario shares: one control plane, operator and pair of hypervisor
// nodes for the whole file (starting them is most of a small scenario's time), and the checks
// a user makes on a node. Locally the nodes are lab-a and lab-b of a node lab, each with its
// own libvirtd, agent, bridges and state dir (hack/lab/README.md), so "on node B" means
// another host; against a given cluster (KOVA_E2E_KUBECONFIG), its nodes.
import { expect } from '@jest/globals';
import type { NodeLab } from '@kova/hack';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startCluster, startLocalCluster, type Cluster, type LocalCluster } from '../cluster.js';
import { Hypervisors } from '../hypervisors.js';
import { ImageServer } from '../image-server.js';
import { Instances, type Instance } from '../instances.js';

const run = promisify(execFile);

export const A = 'lab-a';
export const B = 'lab-b';

/** Whether the scenarios that need the local stack's processes and nodes can run. */
export const local = !process.env.KOVA_E2E_KUBECONFIG;

/** Short timeouts, so that failures and recoveries happen within seconds. */
export const AGENT_ENV = {
  KOVA_HEARTBEAT_SECONDS: '2',
  KOVA_RESYNC_SECONDS: '3',
  KOVA_ORPHAN_GRACE_SECONDS: '2',
  KOVA_SHUTDOWN_TIMEOUT_SECONDS: '2',
};
export const OPERATOR_ENV = {
  KOVA_HEARTBEAT_TIMEOUT_SECONDS: '6',
  KOVA_DELETE_NODE_DOWN_AFTER_SECONDS: '5',
  KOVA_LEADER_LEASE_SECONDS: '4',
};

interface Shared {
  cluster: Cluster;
  vms: Instances;
  hypervisors: Hypervisors;
}

interface LocalShared extends Shared {
  cluster: LocalCluster;
  lab: NodeLab;
  /** Serves images on the lab's gateway, where the nodes reach this machine. */
  images: ImageServer;
}

let shared: Shared | undefined;
let localShared: LocalShared | undefined;

/** The cluster and its helpers; set up by startTwoNodes. */
export function two(): Shared {
  if (!shared) throw new Error('startTwoNodes has not run');
  return shared;
}

/** The local stack with its node lab, for scenarios that kill, cut and break nodes. */
export function lab(): LocalShared {
  if (!localShared) throw new Error('the local node lab is not running (a given cluster?)');
  return localShared;
}

export async function startTwoNodes(): Promise<void> {
  const opts = { suite: 'two-nodes', agentEnv: AGENT_ENV, operatorEnv: OPERATOR_ENV };
  const cluster = local
    ? await startLocalCluster({ ...opts, labNodes: [A, B] })
    : await startCluster(opts);
  shared = { cluster, vms: new Instances(cluster), hypervisors: new Hypervisors(cluster) };
  await shared.hypervisors.ready();
  if (!local) return;
  const c = cluster as LocalCluster;
  const l = c.lab as NodeLab;
  const images = new ImageServer(c, l.gatewayIp);
  await images.start();
  localShared = { ...shared, cluster: c, lab: l, images };
}

export async function stopTwoNodes(): Promise<void> {
  await localShared?.images.stop();
  await shared?.cluster.stop();
}

/** An Instance spec pinned to one node (hypervisors.ready() labels each node). */
export const on = (node: string) => ({ nodeSelector: { 'kova.test/node': node } });

/** The names of this suite's domains in `node`'s libvirtd, or in this machine's without one. */
export async function domainsIn(node?: string): Promise<string[]> {
  const { cluster } = two();
  const argv = ['virsh', '-c', cluster.libvirtUri, 'list', '--all', '--name'];
  const out = node
    ? await cluster.onNode(node, argv)
    : (await run(argv[0] as string, argv.slice(1))).stdout;
  return out.split('\n').filter((n) => n.startsWith(`kova-${cluster.namespace}_`));
}

/** The entries of a directory as `node` sees it (its mounts, e.g. a full tmpfs, included). */
export async function filesIn(node: string, dir: string): Promise<string[]> {
  return (await two().cluster.onNode(node, ['ls', '-A', dir])).split('\n').filter(Boolean);
}

/**
 * A guest really runs on its node and nowhere else: its domain there, owned by that node's
 * agent, its files in that node's state dir; no domain nor files of it on any other node (nor,
 * locally, in this machine's own libvirtd); HTTP from inside the node gets its instance-id.
 */
export async function expectGuestOnlyOn(inst: Instance): Promise<void> {
  const { cluster, vms } = two();
  const node = inst.status?.nodeName as string;
  expect(await vms.domainState(node, inst)).toBe('running');
  expect(await vms.domainOwner(node, inst)).toBe(node);
  expect(await vms.hasFiles(node, inst)).toBe(true);
  for (const other of cluster.nodes.filter((n) => n !== node)) {
    expect(await vms.domainState(other, inst)).toBeUndefined();
    expect(await vms.hasFiles(other, inst)).toBe(false);
  }
  if (local) expect(await domainsIn()).toEqual([]);
  expect(await vms.httpAnswer(inst)).toBe(inst.metadata.uid);
}
