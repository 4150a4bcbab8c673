// A Kubernetes cluster on this machine that runs pods, for installing kova with Helm as a user
// does: a control plane that serves pods (LocalControlPlane `podsReach`) and one real kubelet
// node (hack/kubelet-node/up.sh: containerd, CNI, kubelet, kube-proxy, kova's images imported).
// Pods reach the API server at an address of a link made here (a bridge without ports: this
// kernel has no dummy links): loopback is not theirs, and no address of the machine's own
// interfaces is used.
import { execFile } from 'node:child_process';
import { chmod } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  bridgesNow,
  findLeftovers,
  hostNow,
  removeLeftovers,
  restoreIpForward,
  tablesNow,
  type HostBefore,
} from './cli/footprint.js';
import { LocalControlPlane, ownedTempDir, type ControlPlaneOptions } from './control-plane.js';

const run = promisify(execFile);
const nodeScripts = join(resolve(dirname(fileURLToPath(import.meta.url)), '..'), 'kubelet-node');
/** The link and address pods reach the API server at (also the Node's InternalIP). */
export const API_LINK = 'kova-api0';
export const API_ADDRESS = '10.244.251.1';

export interface KubeletClusterOptions {
  node: string;
  log?: ControlPlaneOptions['log'];
}

export class KubeletCluster {
  private constructor(
    readonly cp: LocalControlPlane,
    readonly node: string,
    /** The node's files: containerd, kubelet, CNI, logs (logs/pods: containers' logs). */
    readonly dir: string,
    private readonly before: HostBefore,
  ) {}

  /** For the chart's agent.stateDir: the agents' disks and images, under the node's files. */
  get stateDir(): string {
    return join(this.dir, 'state');
  }

  static async start(opts: KubeletClusterOptions): Promise<KubeletCluster> {
    // A run killed with -9 leaves its kubelet, kube-proxy, containerd and pods running.
    const dir = await ownedTempDir('kova-kubelet-node-', (abandoned) =>
      runScript('down.sh', [abandoned, '/dev/null', opts.node]),
    );
    // QEMU runs as libvirt-qemu and must reach the disks in the state dir.
    await chmod(dir, 0o755);
    const before = await hostNow();
    await addressLink();
    let cp: LocalControlPlane | undefined;
    try {
      cp = await LocalControlPlane.start({ podsReach: API_ADDRESS, log: opts.log });
      const cluster = new KubeletCluster(cp, opts.node, dir, before);
      await cluster.script('up.sh');
      return cluster;
    } catch (err) {
      if (cp) await new KubeletCluster(cp, opts.node, dir, before).stop();
      else await Promise.all([runScript('down.sh', [dir, '/dev/null', opts.node]), removeLink()]);
      throw err;
    }
  }

  get kubeconfigPath(): string {
    return this.cp.endpoints.kubeconfigPath;
  }

  /**
   * Removes the node and the control plane, then whatever kova's agent pod could no longer
   * remove: guests of its Instances still running (their disks in the state dir), their taps,
   * the bridges and nftables tables that appeared, IPv4 forwarding turned on.
   */
  async stop(): Promise<void> {
    await this.script('down.sh');
    await this.cp.stop();
    await removeLink();
    const leftovers = await findLeftovers({
      nodes: [this.node],
      stateDirs: [this.stateDir],
      tempDirs: [],
      uids: new Set(),
      bridges: [...(await bridgesNow())].filter((b) => !this.before.bridges.has(b)),
      tables: (await tablesNow()).filter((t) => !this.before.tables.has(t)),
    });
    await removeLeftovers(leftovers);
    await restoreIpForward(this.before);
  }

  private script(name: string): Promise<void> {
    const env = { NODE_IP: API_ADDRESS, KUBELET_CLIENT_CA: this.cp.endpoints.kubeletClientCaPath };
    return runScript(name, [this.dir, this.kubeconfigPath, this.node], env);
  }
}

async function runScript(name: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  try {
    await run('bash', [join(nodeScripts, name), ...args], {
      env: { ...process.env, ...env },
      maxBuffer: 64 * 1024 * 1024,
    });
  } catch (err) {
    const { stderr } = err as { stderr?: string };
    throw new Error(`hack/kubelet-node/${name} failed: ${stderr?.slice(-3000) ?? err}`);
  }
}

async function addressLink(): Promise<void> {
  await removeLink();
  await run('ip', ['link', 'add', API_LINK, 'type', 'bridge']);
  await run('ip', ['address', 'add', `${API_ADDRESS}/32`, 'dev', API_LINK]);
  await run('ip', ['link', 'set', API_LINK, 'up']);
}

async function removeLink(): Promise<void> {
  await run('ip', ['link', 'delete', API_LINK]).catch(() => undefined);
}
