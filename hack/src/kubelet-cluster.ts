// A Kubernetes cluster on this machine that runs pods, for installing kova with Helm as a user
// does: a control plane that serves pods (LocalControlPlane `podsReach`) and one real kubelet
// node (hack/kubelet-node/up.sh: containerd, CNI, kubelet, kube-proxy, kova's images imported).
// Pods reach the API server at an address of a link made here (a bridge without ports: this
// kernel has no dummy links): loopback is not theirs, and no address of the machine's own
// interfaces is used.
import { execFile } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { LocalControlPlane, type ControlPlaneOptions } from './control-plane.js';

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
  ) {}

  static async start(opts: KubeletClusterOptions): Promise<KubeletCluster> {
    await addressLink();
    const dir = await mkdtemp(join(tmpdir(), 'kova-kubelet-node-'));
    let cp: LocalControlPlane | undefined;
    try {
      cp = await LocalControlPlane.start({ podsReach: API_ADDRESS, log: opts.log });
      const cluster = new KubeletCluster(cp, opts.node, dir);
      await cluster.script('up.sh');
      return cluster;
    } catch (err) {
      if (cp) await new KubeletCluster(cp, opts.node, dir).stop();
      else await removeLink();
      throw err;
    }
  }

  get kubeconfigPath(): string {
    return this.cp.endpoints.kubeconfigPath;
  }

  async stop(): Promise<void> {
    await this.script('down.sh');
    await this.cp.stop();
    await removeLink();
  }

  private async script(name: string): Promise<void> {
    const args = [join(nodeScripts, name), this.dir, this.kubeconfigPath, this.node];
    try {
      await run('bash', args, {
        env: {
          ...process.env,
          NODE_IP: API_ADDRESS,
          KUBELET_CLIENT_CA: this.cp.endpoints.kubeletClientCaPath,
        },
        maxBuffer: 64 * 1024 * 1024,
      });
    } catch (err) {
      const { stderr } = err as { stderr?: string };
      throw new Error(`hack/kubelet-node/${name} failed: ${stderr?.slice(-3000) ?? err}`);
    }
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
