// A whole kova on this machine: the local control plane, the operator and one node agent
// (this machine as a hypervisor, on the real libvirtd), as `npm start` and the e2e suite run it.
import { CoreV1Api } from '@kubernetes/client-node';
import { apiStatus, loadKubeConfig, type Logger } from '@kova/controller-kit';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { applyCrds, applyFile } from './apply-manifests.js';
import { LocalControlPlane } from './control-plane.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const supervise = join(root, 'hack', 'control-plane', 'supervise.sh');

export interface LocalKovaOptions {
  log: Logger;
  /** Extra environment for the agent, e.g. a short shutdown timeout. */
  agentEnv?: Record<string, string>;
}

export class LocalKova {
  private readonly procs: ChildProcess[] = [];

  private constructor(
    readonly cp: LocalControlPlane,
    readonly stateDir: string,
    readonly nodeName: string,
    readonly guestDir: string,
    private readonly log: Logger,
  ) {}

  get kubeconfigPath(): string {
    return this.cp.endpoints.kubeconfigPath;
  }

  static async start(opts: LocalKovaOptions): Promise<LocalKova> {
    const guestDir = (await promisify(execFile)('bash', [join(root, 'hack', 'guest', 'build.sh')])).stdout.trim().split('\n').pop() as string;
    const cp = await LocalControlPlane.start({ log: (msg, fields) => opts.log.debug(msg, fields) });
    const stateDir = await mkdtemp(join(tmpdir(), 'kova-state-'));
    await chmod(stateDir, 0o755); // QEMU runs as libvirt-qemu and must reach the disks
    const kova = new LocalKova(cp, stateDir, hostname().toLowerCase(), guestDir, opts.log);
    try {
      await applyCrds(cp.endpoints.kubeconfigPath);
      await kova.createNamespace('kova-system');
      await applyFile(join(guestDir, 'image.yaml'), { kubeconfigPath: cp.endpoints.kubeconfigPath });
      const env = { KUBECONFIG: cp.endpoints.kubeconfigPath, KOVA_LOG_LEVEL: process.env.KOVA_LOG_LEVEL ?? 'warn' };
      // No kubelet runs here, so there is no Node object: the operator trusts the heartbeat alone.
      kova.run('operator', join(root, 'operator', 'dist', 'main.js'), { ...env, KOVA_REQUIRE_NODE: 'false', KOVA_HEALTH_PORT: '0', POD_NAME: 'kova-operator-local' });
      kova.run('node-agent', join(root, 'node-agent', 'dist', 'main.js'), {
        ...env, KOVA_NODE_NAME: kova.nodeName, KOVA_STATE_DIR: stateDir, KOVA_HEALTH_PORT: '0', ...opts.agentEnv,
      });
      return kova;
    } catch (err) {
      await kova.stop();
      throw err;
    }
  }

  /** Applies a manifest file of kova objects (namespaced ones into `default`). */
  async apply(path: string): Promise<void> {
    await applyFile(path, { kubeconfigPath: this.kubeconfigPath });
  }

  async stop(): Promise<void> {
    for (const p of this.procs.reverse()) await stopProcess(p);
    await this.cp.stop();
    await rm(this.stateDir, { recursive: true, force: true });
  }

  private run(name: string, script: string, env: Record<string, string>): void {
    // Own process group, as the control plane's: Ctrl-C reaches only us, and we stop it in order.
    const proc = spawn('bash', [supervise, process.execPath, script], { env: { ...process.env, ...env }, stdio: ['pipe', 'inherit', 'inherit'], detached: true });
    proc.on('exit', (code, signal) => {
      if (!proc.killed && code !== 0) this.log.error(`${name} exited`, { code, signal });
    });
    this.procs.push(proc);
  }

  private async createNamespace(name: string): Promise<void> {
    const core = loadKubeConfig(this.kubeconfigPath).makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name } } }).catch((err) => {
      if (apiStatus(err) !== 409) throw err;
    });
  }
}

/** Closing stdin asks supervise.sh to stop the process (SIGTERM, then SIGKILL after 10 s). */
function stopProcess(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((r) => {
    p.once('exit', () => r());
    p.stdin?.end();
  });
}
