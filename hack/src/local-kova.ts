// A whole kova on this machine: the local control plane, the operator and node agents (each
// agent a node of its own with its own state dir, all on the real libvirtd), as `npm start`,
// the e2e suites and the benchmarks run it. Every process can be stopped, killed and started
// again, which is what the fault suite does to them.
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

export interface AgentSpec {
  /** The node (and Hypervisor) name the agent acts as. */
  node: string;
  env?: Record<string, string>;
}

export interface LocalKovaOptions {
  log: Logger;
  /** The agents to start; one named after this machine when omitted. */
  agents?: AgentSpec[];
  /** Extra environment for every agent, e.g. a short shutdown timeout. */
  agentEnv?: Record<string, string>;
  operatorEnv?: Record<string, string>;
}

interface Proc {
  child: ChildProcess;
  exited: Promise<void>;
}

export class LocalKova {
  private readonly procs = new Map<string, Proc>();
  private readonly stateDirs = new Map<string, string>();

  private constructor(
    readonly cp: LocalControlPlane,
    readonly guestDir: string,
    private readonly opts: LocalKovaOptions,
  ) {}

  get kubeconfigPath(): string {
    return this.cp.endpoints.kubeconfigPath;
  }

  /** The nodes the agents act as, in the order they were first started. */
  get nodes(): string[] {
    return [...this.stateDirs.keys()];
  }

  /** The first agent's node: the only one unless more were asked for. */
  get nodeName(): string {
    return this.nodes[0] as string;
  }

  get stateDir(): string {
    return this.stateDirOf(this.nodeName);
  }

  stateDirOf(node: string): string {
    const dir = this.stateDirs.get(node);
    if (!dir) throw new Error(`no agent runs as node ${node}`);
    return dir;
  }

  static async start(opts: LocalKovaOptions): Promise<LocalKova> {
    const guestDir = (
      await promisify(execFile)('bash', [join(root, 'hack', 'guest', 'build.sh')])
    ).stdout
      .trim()
      .split('\n')
      .pop() as string;
    const cp = await LocalControlPlane.start({ log: (msg, fields) => opts.log.debug(msg, fields) });
    const kova = new LocalKova(cp, guestDir, opts);
    try {
      await applyCrds(cp.endpoints.kubeconfigPath);
      await kova.createNamespace('kova-system');
      await applyFile(join(guestDir, 'image.yaml'), {
        kubeconfigPath: cp.endpoints.kubeconfigPath,
      });
      kova.startOperator();
      for (const agent of opts.agents ?? [{ node: hostname().toLowerCase() }])
        await kova.startAgent(agent.node, agent.env);
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

  startOperator(): void {
    // No kubelet runs here, so there is no Node object: the operator trusts the heartbeat alone.
    this.run('operator', join(root, 'operator', 'dist', 'main.js'), {
      KOVA_REQUIRE_NODE: 'false',
      KOVA_HEALTH_PORT: '0',
      POD_NAME: `kova-operator-local-${Date.now()}`,
      ...this.opts.operatorEnv,
    });
  }

  /** Starts (or starts again, keeping its state dir) the agent acting as `node`. */
  async startAgent(node: string, env: Record<string, string> = {}): Promise<void> {
    let stateDir = this.stateDirs.get(node);
    if (!stateDir) {
      stateDir = await mkdtemp(join(tmpdir(), 'kova-state-'));
      await chmod(stateDir, 0o755); // QEMU runs as libvirt-qemu and must reach the disks
      this.stateDirs.set(node, stateDir);
    }
    this.run(`agent/${node}`, join(root, 'node-agent', 'dist', 'main.js'), {
      KOVA_NODE_NAME: node,
      KOVA_STATE_DIR: stateDir,
      KOVA_HEALTH_PORT: '0',
      ...this.opts.agentEnv,
      ...env,
    });
  }

  /** Stops a process as an orderly shutdown would: `operator` or `agent/<node>`. */
  async stopProcess(name: string): Promise<void> {
    const p = this.procs.get(name);
    if (!p) return;
    p.child.stdin?.end();
    await p.exited;
    this.procs.delete(name);
  }

  /** kill -9, no chance to clean up: the process and its supervisor die at once. */
  async killProcess(name: string): Promise<void> {
    const p = this.procs.get(name);
    if (!p) throw new Error(`${name} is not running`);
    process.kill(-(p.child.pid as number), 'SIGKILL');
    await p.exited;
    this.procs.delete(name);
  }

  async stop(): Promise<void> {
    for (const name of [...this.procs.keys()].reverse()) await this.stopProcess(name);
    await this.cp.stop();
    for (const dir of this.stateDirs.values()) await rm(dir, { recursive: true, force: true });
  }

  private run(name: string, script: string, env: Record<string, string>): void {
    if (this.procs.has(name)) throw new Error(`${name} is already running`);
    const base = {
      KUBECONFIG: this.kubeconfigPath,
      KOVA_LOG_LEVEL: process.env.KOVA_LOG_LEVEL ?? 'warn',
    };
    // Own process group, as the control plane's: Ctrl-C reaches only us, and we stop it in order.
    const child = spawn('bash', [supervise, process.execPath, script], {
      env: { ...process.env, ...base, ...env },
      stdio: ['pipe', 'inherit', 'inherit'],
      detached: true,
    });
    const exited = new Promise<void>((r) =>
      child.once('exit', (code, signal) => {
        if (!child.stdin?.writableEnded && signal !== 'SIGKILL')
          this.opts.log.error(`${name} exited`, { code, signal });
        r();
      }),
    );
    this.procs.set(name, { child, exited });
  }

  private async createNamespace(name: string): Promise<void> {
    const core = loadKubeConfig(this.kubeconfigPath).makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name } } }).catch((err) => {
      if (apiStatus(err) !== 409) throw err;
    });
  }
}
