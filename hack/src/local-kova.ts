// A whole kova on this machine: the local control plane, the operator and node agents (each
// agent a node of its own with its own state dir, all on the real libvirtd), as `npm start`,
// the e2e suites and the benchmarks run it. Every process can be stopped, killed and started
// again, which is what the fault suite does to them. With `restartCrashed`, a process that dies
// on its own is started again after a backoff, as the cluster's kubelet would (`npm start`).
import { CoreV1Api } from '@kubernetes/client-node';
import { apiStatus, loadKubeConfig, type Logger } from '@kova/controller-kit';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { applyCrds, applyFile, applyPolicies } from './apply-manifests.js';
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
  /** Command prefix the agents run under (e.g. one that gives them a private /etc/hosts). */
  agentPrefix?: string[];
  /** Start a process that exited on its own again, after a backoff doubling up to 30 s. */
  restartCrashed?: boolean;
}

interface Proc {
  child: ChildProcess;
  exited: Promise<void>;
  /** Set when we stop or kill it ourselves: that exit is no crash. */
  stopping: boolean;
}

/** How to start a process again: what `run` was given. */
interface ProcSpec {
  argv: string[];
  env: Record<string, string>;
  /** Restarts since it last ran for RESET_AFTER_MS; sets the backoff. */
  crashes: number;
  startedAt: number;
  timer?: NodeJS.Timeout;
}

const FIRST_BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 30_000;
const RESET_AFTER_MS = 60_000;

export class LocalKova {
  private readonly procs = new Map<string, Proc>();
  private readonly stateDirs = new Map<string, string>();
  private readonly specs = new Map<string, ProcSpec>();
  private stopped = false;

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
      await applyPolicies(cp.endpoints.kubeconfigPath);
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
    this.run('operator', [process.execPath, join(root, 'operator', 'dist', 'main.js')], {
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
    const agent = [process.execPath, join(root, 'node-agent', 'dist', 'main.js')];
    this.run(`agent/${node}`, [...(this.opts.agentPrefix ?? []), ...agent], {
      KOVA_NODE_NAME: node,
      KOVA_STATE_DIR: stateDir,
      KOVA_HEALTH_PORT: '0',
      KOVA_CONSOLE_PORT: '0',
      // The KVM probe boots a kernel: the test guest's, where the host has none in /boot.
      KOVA_KVM_PROBE_KERNEL: join(this.guestDir, 'vmlinuz'),
      ...this.opts.agentEnv,
      ...env,
    });
  }

  /** Starts at once every process that crashed and waits for its backoff: teardown needs them. */
  restartCrashedNow(): string[] {
    const started: string[] = [];
    for (const [name, spec] of this.specs) {
      if (this.procs.has(name) || !spec.timer) continue;
      clearTimeout(spec.timer);
      spec.timer = undefined;
      this.spawnProc(name, spec);
      started.push(name);
    }
    return started;
  }

  /** Stops a process as an orderly shutdown would: `operator` or `agent/<node>`. */
  async stopProcess(name: string): Promise<void> {
    const spec = this.specs.get(name);
    clearTimeout(spec?.timer);
    this.specs.delete(name);
    const p = this.procs.get(name);
    if (!p) return;
    p.stopping = true;
    p.child.stdin?.end();
    await p.exited;
    this.procs.delete(name);
  }

  /** kill -9, no chance to clean up: the process and its supervisor die at once. */
  async killProcess(name: string): Promise<void> {
    const p = this.procs.get(name);
    if (!p) throw new Error(`${name} is not running`);
    this.specs.delete(name);
    p.stopping = true;
    process.kill(-(p.child.pid as number), 'SIGKILL');
    await p.exited;
    this.procs.delete(name);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const name of [...this.specs.keys()].reverse()) await this.stopProcess(name);
    await this.cp.stop();
    for (const dir of this.stateDirs.values()) await rm(dir, { recursive: true, force: true });
  }

  private run(name: string, argv: string[], env: Record<string, string>): void {
    if (this.procs.has(name)) throw new Error(`${name} is already running`);
    const spec: ProcSpec = { argv, env, crashes: 0, startedAt: 0 };
    this.specs.set(name, spec);
    this.spawnProc(name, spec);
  }

  private spawnProc(name: string, spec: ProcSpec): void {
    const base = {
      KUBECONFIG: this.kubeconfigPath,
      KOVA_LOG_LEVEL: process.env.KOVA_LOG_LEVEL ?? 'warn',
    };
    // Own process group, as the control plane's: Ctrl-C reaches only us, and we stop it in order.
    const child = spawn('bash', [supervise, ...spec.argv], {
      env: { ...process.env, ...base, ...spec.env },
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    });
    // Relayed rather than inherited: on a terminal that was closed a child's own write would
    // fail with EIO and kill it; here only the relayed copy is lost.
    child.stdout?.on('data', (d: Buffer) => process.stdout.write(d));
    child.stderr?.on('data', (d: Buffer) => process.stderr.write(d));
    spec.startedAt = Date.now();
    const proc: Proc = { child, stopping: false, exited: Promise.resolve() };
    proc.exited = new Promise<void>((r) =>
      child.once('exit', (code, signal) => {
        if (!proc.stopping) this.crashed(name, spec, { code, signal });
        r();
      }),
    );
    this.procs.set(name, proc);
  }

  /** A process died on its own: log it, and start it again after the backoff if asked to. */
  private crashed(
    name: string,
    spec: ProcSpec,
    how: { code: number | null; signal: string | null },
  ) {
    this.procs.delete(name);
    if (!this.opts.restartCrashed || this.stopped) {
      this.opts.log.error(`${name} exited`, how);
      return;
    }
    if (Date.now() - spec.startedAt > RESET_AFTER_MS) spec.crashes = 0;
    const backoffMs = Math.min(FIRST_BACKOFF_MS * 2 ** spec.crashes, MAX_BACKOFF_MS);
    spec.crashes++;
    this.opts.log.error(`${name} exited; restarting it`, {
      ...how,
      restartInMs: backoffMs,
      restarts: spec.crashes,
    });
    spec.timer = setTimeout(() => {
      spec.timer = undefined;
      if (!this.stopped && this.specs.get(name) === spec) this.spawnProc(name, spec);
    }, backoffMs);
  }

  private async createNamespace(name: string): Promise<void> {
    const core = loadKubeConfig(this.kubeconfigPath).makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name } } }).catch((err) => {
      if (apiStatus(err) !== 409) throw err;
    });
  }
}
