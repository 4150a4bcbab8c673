// The node lab: N hypervisor nodes on this machine that are really apart. Each node is its own
// network, mount and pid namespace (hack/lab/node-init.sh is its pid 1) with its own virtlogd,
// libvirtd, libvirt directories, node agent and state dir; an underlay veth joins it to the
// lab's switch, a bridge in a network namespace of its own. The control plane stays where it
// is; the nodes reach it through the switch (see hack/lab/README.md for why). A node can be
// killed whole (its pid namespace, and so every process of it, at once) and partitioned (its
// switch port down).
import type { Logger } from '@kova/controller-kit';
import { execFile, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, cp, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse, stringify } from 'yaml';
import { until } from './until.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const nodeInit = join(root, 'hack', 'lab', 'node-init.sh');
const supervise = join(root, 'hack', 'control-plane', 'supervise.sh');
const run = promisify(execFile);

/** Lab slots: slot s uses 172.31.(250-s).0/24 and the root-namespace link `kvlab<s>`. */
const SLOTS = 10;
const DIR_PREFIX = 'kova-lab-';
const NODE_LINK = 'underlay0';

export interface NodeLabOptions {
  log: Logger;
  /** Node (and Hypervisor) names; `count` nodes named lab-1, lab-2, … when omitted. */
  nodes?: string[];
  count?: number;
  /** The control plane's kubeconfig; defaults to $KUBECONFIG. */
  kubeconfigPath?: string;
  /** Extra environment for every agent (e.g. a short heartbeat). */
  agentEnv?: Record<string, string>;
}

/** One node's recorded host pids, e.g. to check from outside that they are gone. */
export interface LabNodePids {
  /** pid 1 of the node's pid namespace: everything of the node dies with it. */
  init: number;
  virtlogd: number;
  libvirtd: number;
  agent: number;
}

export interface LabNode {
  name: string;
  /** The node's address on the lab's underlay. */
  underlayIp: string;
  /** The agent's state dir (KOVA_STATE_DIR). */
  stateDir: string;
  /** The node's directory: its libvirt directories and state dir live below it. */
  dir: string;
  pids: LabNodePids;
  /** The node's port on the switch (in the switch's namespace). */
  switchPort: string;
  /** False once killed or stopped. */
  running: boolean;
}

interface NodeProcs {
  unshare: ChildProcess;
  unshareExited: Promise<void>;
  agent?: ChildProcess;
  agentExited?: Promise<void>;
  /** Set when we kill the agent on purpose: that exit is no crash. */
  agentKilled?: boolean;
}

/** What a lab records on disk so that the next start can clean up after an owner killed -9. */
interface LabRecord {
  owner: { pid: number; start: string };
  procs: { pid: number; start: string }[];
  rootLink: string;
}

export class NodeLab {
  readonly nodes: LabNode[] = [];
  private readonly procs = new Map<string, NodeProcs>();
  private switchProc?: ChildProcess;
  private switchExited?: Promise<void>;
  private forwarder?: Server;
  private readonly sockets = new Set<Socket>();
  private stopped = false;

  private constructor(
    readonly slot: number,
    /** The lab's directory in the temp dir; removed by stop(). */
    readonly dir: string,
    private readonly opts: NodeLabOptions,
  ) {}

  /** The lab's underlay subnet prefix, e.g. 172.31.250 for slot 0. */
  get subnet(): string {
    return `172.31.${250 - this.slot}`;
  }

  /** The root namespace's address on the underlay: where the nodes reach the control plane. */
  get gatewayIp(): string {
    return `${this.subnet}.1`;
  }

  /** The process holding the switch's network namespace: what joins the underlay joins it. */
  get switchPid(): number {
    if (!this.switchProc?.pid) throw new Error('the lab switch is not running');
    return this.switchProc.pid;
  }

  /** The root namespace's end of the link to the switch. */
  get rootLink(): string {
    return `kvlab${this.slot}`;
  }

  /** The kubeconfig the agents use: the control plane through the underlay. */
  get nodeKubeconfigPath(): string {
    return join(this.dir, 'kubeconfig');
  }

  node(name: string): LabNode {
    const n = this.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no lab node ${name}; the lab has ${this.nodes.map((x) => x.name)}`);
    return n;
  }

  static async start(opts: NodeLabOptions): Promise<NodeLab> {
    const names = opts.nodes ?? Array.from({ length: opts.count ?? 2 }, (_, i) => `lab-${i + 1}`);
    if (names.length === 0 || names.length > 200) throw new Error('a lab has 1 to 200 nodes');
    const kubeconfigPath = opts.kubeconfigPath ?? process.env.KUBECONFIG;
    if (!kubeconfigPath)
      throw new Error('no control plane: pass kubeconfigPath or set $KUBECONFIG');
    if (process.getuid?.() !== 0)
      throw new Error('the node lab needs root: it makes namespaces and veths and runs libvirtd');
    await removeAbandonedLabs(opts.log);
    const { slot, dir } = await claimSlot();
    const lab = new NodeLab(slot, dir, opts);
    try {
      await lab.startSwitch();
      await lab.startForwarder(kubeconfigPath);
      for (const [i, name] of names.entries()) await lab.startNode(name, i);
      return lab;
    } catch (err) {
      await lab.stop();
      throw err;
    }
  }

  /** Runs a command inside a node: its network, mount and pid namespaces. */
  async exec(node: string, argv: string[]): Promise<{ stdout: string; stderr: string }> {
    const n = this.node(node);
    if (!n.running) throw new Error(`lab node ${node} is not running`);
    return run('nsenter', [...nsenterArgs(n.pids.init), ...argv], { maxBuffer: 16 << 20 });
  }

  /** Starts a process inside a node (its namespaces); it dies with the node at the latest. */
  spawn(node: string, argv: string[], opts: SpawnOptions = {}): ChildProcess {
    const n = this.node(node);
    if (!n.running) throw new Error(`lab node ${node} is not running`);
    return spawn('nsenter', [...nsenterArgs(n.pids.init), ...argv], opts);
  }

  /** Kills the node whole, as a power loss: its libvirtd, agent and every QEMU at once. */
  async kill(node: string): Promise<void> {
    const n = this.node(node);
    const p = this.procs.get(node);
    if (!n.running || !p) throw new Error(`lab node ${node} is not running`);
    n.running = false;
    process.kill(n.pids.init, 'SIGKILL');
    await p.unshareExited;
    p.agent?.stdin?.end();
    await p.agentExited;
    this.opts.log.info('lab node killed', { node });
  }

  /**
   * Starts a killed node again, as a host powered back on: the same name, underlay address,
   * state dir and libvirt directories (its persistent domains, its image cache); new daemons and
   * a new agent, its runtime state (/run/libvirt, bridges, taps) empty.
   */
  async restart(node: string): Promise<void> {
    const n = this.node(node);
    if (n.running) throw new Error(`lab node ${node} is running; kill it first`);
    await this.startNode(n.name, this.nodes.indexOf(n));
  }

  /**
   * kill -9 of the node's agent alone (and its supervisor): no chance to clean up, while its
   * libvirtd and guests run on. startAgent(node) starts a new one on the same state dir.
   */
  async killAgent(node: string): Promise<void> {
    const n = this.node(node);
    const p = this.procs.get(node);
    if (!n.running || !p?.agent || p.agent.exitCode !== null || p.agent.signalCode !== null)
      throw new Error(`the agent of lab node ${node} is not running`);
    p.agentKilled = true;
    // Its own process group: the supervisor, nsenter and the agent inside the node.
    process.kill(-(p.agent.pid as number), 'SIGKILL');
    await p.agentExited;
    this.opts.log.info('lab node agent killed', { node });
  }

  /** Starts the node's agent again after killAgent(). */
  async startAgent(node: string): Promise<void> {
    const n = this.node(node);
    const p = this.procs.get(node);
    if (!n.running || !p) throw new Error(`lab node ${node} is not running`);
    if (p.agent && p.agent.exitCode === null && p.agent.signalCode === null)
      throw new Error(`the agent of lab node ${node} is running`);
    await this.launchAgent(n, p);
  }

  /**
   * Restarts the node's libvirtd as an admin would (SIGTERM, then start it again): its guests
   * run on, and its agent must reconnect by itself.
   */
  async restartLibvirtd(node: string): Promise<void> {
    const n = this.node(node);
    if (!n.running) throw new Error(`lab node ${node} is not running`);
    const old = n.pids.libvirtd;
    process.kill(old, 'SIGTERM');
    await until(`libvirtd of lab node ${node} to exit`, () => !existsSync(`/proc/${old}`));
    await this.startDaemon(n, 'libvirtd');
    this.opts.log.info('lab node libvirtd restarted', { node, libvirtd: n.pids.libvirtd });
  }

  /** Cuts the node's underlay link: it reaches neither the other nodes nor the control plane. */
  async partition(node: string): Promise<void> {
    await this.switchIp(['link', 'set', this.node(node).switchPort, 'down']);
    this.opts.log.info('lab node partitioned', { node });
  }

  /** Restores the node's underlay link after partition(). */
  async heal(node: string): Promise<void> {
    await this.switchIp(['link', 'set', this.node(node).switchPort, 'up']);
    this.opts.log.info('lab node healed', { node });
  }

  /** Stops every node and the switch and removes the lab's directory: nothing is left. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    // Agents first, in an orderly way, so they do not log their node's death as trouble.
    await Promise.all(
      [...this.procs.values()].map(async (p) => {
        p.agent?.stdin?.end();
        await p.agentExited;
      }),
    );
    for (const n of this.nodes) {
      const p = this.procs.get(n.name);
      if (n.running && p) {
        n.running = false;
        signal(n.pids.init, 'SIGKILL');
      }
      await p?.unshareExited;
    }
    // The switch's namespace goes with its only process, and with it every veth end in it.
    if (this.switchProc?.pid) signal(this.switchProc.pid, 'SIGKILL');
    await this.switchExited;
    await run('ip', ['link', 'del', this.rootLink]).catch(() => undefined);
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => (this.forwarder ? this.forwarder.close(() => r()) : r()));
    await rm(this.dir, { recursive: true, force: true });
    this.opts.log.info('lab stopped', { slot: this.slot });
  }

  private async startSwitch(): Promise<void> {
    const sw = spawn(
      'setpriv',
      ['--pdeathsig', 'KILL', '--', 'unshare', '--net', '--', 'sleep', 'infinity'],
      { detached: true, stdio: 'ignore' },
    );
    this.switchProc = sw;
    this.switchExited = exitOf(sw);
    await this.record();
    // unshare has created the namespace once `sleep` runs in its place.
    await until('the switch namespace', async () => (await comm(sw.pid as number)) === 'sleep');
    await run('ip', [
      'link',
      'add',
      this.rootLink,
      'type',
      'veth',
      'peer',
      'name',
      'uplink',
      'netns',
      String(sw.pid),
    ]);
    await run('ip', ['addr', 'add', `${this.gatewayIp}/24`, 'dev', this.rootLink]);
    await run('ip', ['link', 'set', this.rootLink, 'up']);
    await this.switchIp(['link', 'set', 'lo', 'up']);
    await this.switchIp(['link', 'add', 'switch', 'type', 'bridge']);
    await this.switchIp(['link', 'set', 'switch', 'up']);
    await this.switchIp(['link', 'set', 'uplink', 'master', 'switch', 'up']);
  }

  /**
   * The API server listens on 127.0.0.1 of this namespace, which a node's loopback is not: a
   * TCP relay on the underlay gateway address passes the nodes' connections on unchanged (TLS
   * end to end), and a node kubeconfig points at it.
   */
  private async startForwarder(kubeconfigPath: string): Promise<void> {
    const config = parse(await readFile(kubeconfigPath, 'utf8')) as KubeconfigDoc;
    const target = new URL(currentCluster(config, kubeconfigPath).server);
    const srv = createServer((client) => {
      const upstream = createConnection({
        host: target.hostname,
        port: Number(target.port || 443),
      });
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    this.forwarder = srv;
    await new Promise<void>((ok, fail) => {
      srv.once('error', fail);
      srv.listen(0, this.gatewayIp, ok);
    });
    const port = (srv.address() as { port: number }).port;
    const cluster = currentCluster(config, kubeconfigPath);
    // The serving certificate names 127.0.0.1 and `kubernetes`, not the gateway address.
    cluster['tls-server-name'] ??= target.hostname === '127.0.0.1' ? 'kubernetes' : target.hostname;
    cluster.server = `${target.protocol}//${this.gatewayIp}:${port}`;
    await writeFile(this.nodeKubeconfigPath, stringify(config), { mode: 0o600 });
  }

  private async startNode(name: string, index: number): Promise<void> {
    const dir = join(this.dir, 'nodes', name);
    const stateDir = join(dir, 'state');
    await prepareNodeDir(dir, stateDir);
    const unshare = spawn(
      'setpriv',
      [
        '--pdeathsig',
        'KILL',
        '--',
        'unshare',
        '--net',
        '--mount',
        '--propagation',
        'private',
        '--pid',
        '--fork',
        '--kill-child=SIGKILL',
        '--mount-proc',
        '--',
        'bash',
        nodeInit,
        dir,
      ],
      { detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const procs: NodeProcs = { unshare, unshareExited: exitOf(unshare) };
    this.procs.set(name, procs);
    let output = '';
    unshare.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    const ready = new Promise<void>((ok, fail) => {
      unshare.stdout?.on('data', (d: Buffer) => {
        output += d.toString();
        if (output.includes('ready\n')) ok();
      });
      unshare.once('exit', (code) =>
        fail(new Error(`lab node ${name} exited (${code}) while starting: ${output.trim()}`)),
      );
    });
    await ready;
    const init = await until(`pid 1 of lab node ${name}`, async () => {
      const kids = await readFile(
        `/proc/${unshare.pid}/task/${unshare.pid}/children`,
        'utf8',
      ).catch(() => '');
      return Number(kids.trim().split(/\s+/)[0]) || undefined;
    });
    const fresh: LabNode = {
      name,
      underlayIp: `${this.subnet}.${11 + index}`,
      stateDir,
      dir,
      pids: { init, virtlogd: 0, libvirtd: 0, agent: 0 },
      switchPort: `port${index}`,
      running: true,
    };
    // A node started again (restart) keeps its object: callers may hold it.
    const again = this.nodes.find((x) => x.name === name);
    const node = again ? Object.assign(again, fresh) : fresh;
    if (!again) this.nodes.push(node);
    await this.record();
    await this.connectUnderlay(node);
    await this.startDaemons(node);
    await this.record();
    await this.launchAgent(node, procs);
    this.opts.log.info('lab node started', {
      node: name,
      underlayIp: node.underlayIp,
      ...node.pids,
    });
  }

  private async connectUnderlay(n: LabNode): Promise<void> {
    const port = n.switchPort;
    const init = String(n.pids.init);
    await this.switchIp([
      'link',
      'add',
      port,
      'type',
      'veth',
      'peer',
      'name',
      NODE_LINK,
      'netns',
      init,
    ]);
    await this.switchIp(['link', 'set', port, 'master', 'switch', 'up']);
    const inNode = (args: string[]) => run('nsenter', ['-t', init, '-n', 'ip', ...args]);
    await inNode(['addr', 'add', `${n.underlayIp}/24`, 'dev', NODE_LINK]);
    await inNode(['link', 'set', NODE_LINK, 'up']);
  }

  private async startDaemons(n: LabNode): Promise<void> {
    await this.startDaemon(n, 'virtlogd');
    await this.startDaemon(n, 'libvirtd');
    await until(
      `libvirtd of lab node ${n.name} to answer`,
      () =>
        this.exec(n.name, ['virsh', '-c', 'qemu:///system', 'version']).then(
          () => true,
          () => false,
        ),
      30_000,
      200,
    );
  }

  /** A daemon with its pid file in the node's own /run/libvirt, never /run's; records its pid. */
  private async startDaemon(n: LabNode, d: 'virtlogd' | 'libvirtd'): Promise<void> {
    const pidFile = `/run/libvirt/${d}.pid`;
    await this.exec(n.name, [d, '-d', '-p', pidFile]);
    const nsPid = Number(await readFile(`/proc/${n.pids.init}/root${pidFile}`, 'utf8'));
    const found = (await processesIn(n.pids.init)).find((p) => p.nsPid === nsPid);
    if (!found) throw new Error(`${d} of lab node ${n.name} (pid ${nsPid} there) is not running`);
    n.pids[d] = found.hostPid;
  }

  /** Starts the node's agent and records its host pid. */
  private async launchAgent(n: LabNode, procs: NodeProcs): Promise<void> {
    this.spawnAgent(n, procs);
    n.pids.agent = await until(`the agent of lab node ${n.name}`, async () => {
      const found = (await processesIn(n.pids.init)).find((p) =>
        p.cmdline.includes(join('node-agent', 'dist', 'main.js')),
      );
      return found?.hostPid;
    });
  }

  private spawnAgent(n: LabNode, procs: NodeProcs): void {
    // supervise.sh stops it when its stdin closes and when we die; inside, the agent dies when
    // nsenter does (pdeathsig), and with the node's pid namespace in any case.
    const agent = spawn(
      'bash',
      [
        supervise,
        'nsenter',
        ...nsenterArgs(n.pids.init),
        'setpriv',
        '--pdeathsig',
        'TERM',
        '--',
        process.execPath,
        join(root, 'node-agent', 'dist', 'main.js'),
      ],
      {
        env: {
          ...process.env,
          KUBECONFIG: this.nodeKubeconfigPath,
          KOVA_LOG_LEVEL: process.env.KOVA_LOG_LEVEL ?? 'warn',
          KOVA_NODE_NAME: n.name,
          KOVA_STATE_DIR: n.stateDir,
          KOVA_LIBVIRT_URI: 'qemu:///system',
          KOVA_HEALTH_PORT: '0',
          // The node's underlay address: the endpoint other nodes' tunnels reach it at.
          KOVA_TUNNEL_ADDRESS: n.underlayIp,
          ...this.opts.agentEnv,
        },
        stdio: ['pipe', 'pipe', 'pipe'],
        detached: true,
      },
    );
    // Relayed, as LocalKova does: the agents' JSON logs.
    agent.stdout?.on('data', (d: Buffer) => process.stdout.write(d));
    agent.stderr?.on('data', (d: Buffer) => process.stderr.write(d));
    procs.agent = agent;
    procs.agentKilled = false;
    procs.agentExited = exitOf(agent).then(() => {
      if (n.running && !this.stopped && !procs.agentKilled)
        this.opts.log.error('lab node agent exited', { node: n.name, code: agent.exitCode });
    });
  }

  private switchIp(args: string[]) {
    return run('nsenter', ['-t', String(this.switchProc?.pid), '-n', 'ip', ...args]);
  }

  /** Writes what the next start needs to clean up if we are killed -9. */
  private async record(): Promise<void> {
    const pids = [this.switchProc?.pid, ...this.nodes.map((n) => n.pids.init)];
    for (const p of this.procs.values()) pids.push(p.unshare.pid);
    const procs = [];
    for (const pid of pids) if (pid) procs.push({ pid, start: await startTime(pid) });
    const rec: LabRecord = {
      owner: { pid: process.pid, start: await startTime(process.pid) },
      procs,
      rootLink: this.rootLink,
    };
    await writeFile(join(this.dir, 'lab.json'), JSON.stringify(rec));
  }
}

function nsenterArgs(init: number): string[] {
  return ['-t', String(init), '-n', '-m', '-p', '--'];
}

async function prepareNodeDir(dir: string, stateDir: string): Promise<void> {
  const lv = join(dir, 'libvirt');
  for (const d of ['lib', 'log', 'cache', 'etc']) await mkdir(join(lv, d), { recursive: true });
  await mkdir(stateDir, { recursive: true });
  // QEMU runs as libvirt-qemu and must reach the disks in the state dir.
  for (const d of [join(dir, '..', '..'), join(dir, '..'), dir, stateDir]) await chmod(d, 0o755);
  // The host's configuration (daemon settings, libvirt's own nwfilters), but none of its
  // domains, networks or secrets: the node starts empty.
  await cp('/etc/libvirt', join(lv, 'etc'), {
    recursive: true,
    filter: (src) => !/^\/etc\/libvirt\/(qemu\/.+|secrets|storage)/.test(src),
  });
  await mkdir(join(lv, 'etc', 'qemu'), { recursive: true });
  // No cgroups for QEMU: the node's sysfs hides the host's hierarchies (which /proc/mounts still
  // lists), and cgroups a killed node's libvirtd made would be left on the host.
  const qemuConf = join(lv, 'etc', 'qemu.conf');
  const conf = await readFile(qemuConf, 'utf8').catch(() => '');
  await writeFile(
    qemuConf,
    `${conf.replace(/^\s*cgroup_controllers\s*=.*$/gm, '')}\ncgroup_controllers = [ ]\n`,
  );
  for (const d of ['qemu', 'dnsmasq']) await mkdir(join(lv, 'lib', d), { recursive: true });
  // QEMU's capabilities, probed by the host's libvirtd for these same binaries: reusing them
  // saves each node's daemon a probe of QEMU (libvirt validates and re-probes if stale).
  await cp('/var/cache/libvirt/qemu', join(lv, 'cache', 'qemu'), { recursive: true }).catch(
    () => undefined,
  );
}

interface KubeconfigDoc {
  'current-context'?: string;
  contexts?: { name: string; context: { cluster: string } }[];
  clusters?: { name: string; cluster: { server: string; 'tls-server-name'?: string } }[];
}

function currentCluster(doc: KubeconfigDoc, path: string) {
  const ctx = doc.contexts?.find((c) => c.name === doc['current-context']) ?? doc.contexts?.[0];
  const cluster = doc.clusters?.find((c) => c.name === ctx?.context.cluster) ?? doc.clusters?.[0];
  if (!cluster) throw new Error(`kubeconfig ${path} names no cluster`);
  return cluster.cluster;
}

function exitOf(child: ChildProcess): Promise<void> {
  return new Promise((r) => {
    if (child.exitCode !== null || child.signalCode !== null) r();
    else child.once('exit', () => r());
  });
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

async function comm(pid: number): Promise<string> {
  return (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim();
}

/** A process's start time (field 22 of /proc/PID/stat): tells it from a later one of its pid. */
async function startTime(pid: number): Promise<string> {
  const s = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return s.slice(s.lastIndexOf(')') + 2).split(' ')[19] ?? '';
}

/** True when `pid` runs and is the process recorded with `start`. */
export async function isSameProcess(pid: number, start: string): Promise<boolean> {
  return (await startTime(pid)) === start && start !== '';
}

/** The processes in the pid namespace whose pid 1 is `init`, with host and namespace pids. */
async function processesIn(
  init: number,
): Promise<{ hostPid: number; nsPid: number; cmdline: string }[]> {
  const ns = (await stat(`/proc/${init}/ns/pid`)).ino;
  const found = [];
  for (const entry of await readdir('/proc')) {
    const pid = Number(entry);
    if (!pid) continue;
    try {
      if ((await stat(`/proc/${pid}/ns/pid`)).ino !== ns) continue;
      const status = await readFile(`/proc/${pid}/status`, 'utf8');
      const nsPids = /^NSpid:\s+(.*)$/m.exec(status)?.[1]?.trim().split(/\s+/) ?? [];
      const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).replace(/\0/g, ' ');
      found.push({ hostPid: pid, nsPid: Number(nsPids[nsPids.length - 1]), cmdline });
    } catch {
      // exited while we looked
    }
  }
  return found;
}

/** Takes the first free slot: its directory, created atomically, is the claim. */
async function claimSlot(): Promise<{ slot: number; dir: string }> {
  for (let slot = 0; slot < SLOTS; slot++) {
    const dir = join(tmpdir(), `${DIR_PREFIX}${slot}`);
    try {
      await mkdir(dir);
    } catch {
      continue;
    }
    const rec: Partial<LabRecord> = {
      owner: { pid: process.pid, start: await startTime(process.pid) },
      procs: [],
      rootLink: `kvlab${slot}`,
    };
    await writeFile(join(dir, 'lab.json'), JSON.stringify(rec));
    return { slot, dir };
  }
  throw new Error(
    `all ${SLOTS} lab slots (${tmpdir()}/${DIR_PREFIX}0…${SLOTS - 1}) are taken by running labs; stop one`,
  );
}

/**
 * A starter killed with -9 cannot clean up. Its nodes and switch die with it (pdeathsig), and
 * with them their namespaces and links; what may remain is removed here: any recorded process
 * still alive (only if it is still the one recorded), the root link, the directory.
 */
export async function removeAbandonedLabs(log: Logger): Promise<void> {
  for (const name of await readdir(tmpdir())) {
    if (!name.startsWith(DIR_PREFIX)) continue;
    const dir = join(tmpdir(), name);
    const text = await readFile(join(dir, 'lab.json'), 'utf8').catch(() => undefined);
    let rec: Partial<LabRecord> = {};
    try {
      rec = JSON.parse(text ?? '{}') as Partial<LabRecord>;
    } catch {
      // a record cut short: its owner died while writing it
    }
    const owner = rec.owner;
    if (owner && (await isSameProcess(owner.pid, owner.start))) continue;
    // A lab that is just being claimed has no record yet; leave it a moment.
    if (!owner && Date.now() - (await stat(dir)).mtimeMs < 10_000) continue;
    for (const p of rec.procs ?? [])
      if (await isSameProcess(p.pid, p.start)) signal(p.pid, 'SIGKILL');
    if (rec.rootLink) await run('ip', ['link', 'del', rec.rootLink]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
    log.info('removed a lab its dead owner left', { dir, owner: owner?.pid });
  }
}
