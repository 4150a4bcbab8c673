// `npm start` driven as a user drives it, in a terminal: a pty from script(1), so that killing
// script closes the terminal and the kernel hangs up the session (SIGHUP), as closing a window
// does. What it printed, its processes and the directories it made are read from outside.
import { CustomObjectsApi } from '@kubernetes/client-node';
import { loadKubeConfig } from '@kova/controller-kit';
import { GROUP, VERSION, type InstanceObject } from '@kova/crds';
import { until } from '@kova/hack';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { promisify } from 'node:util';
import { root } from './cluster.js';
import { descendants, environOf, findProcess, processesNaming } from './processes.js';

const run = promisify(execFile);
export const BRIDGE = 'kova-br0';

export const hasLink = (name: string) =>
  run('ip', ['-o', 'link', 'show', 'dev', name]).then(
    () => true,
    () => false,
  );

export class NpmStart {
  output = '';
  api!: CustomObjectsApi;
  kubeconfigPath = '';
  runPid = 0;
  stateDir = '';
  cpDir = '';
  bridgeBefore = false;
  private terminal!: ChildProcess;

  /** Starts it and waits until it says kova is running (the demo booted and answered). */
  static async start(): Promise<NpmStart> {
    const r = new NpmStart();
    r.bridgeBefore = await hasLink(BRIDGE);
    r.terminal = spawn('script', ['-qfec', 'npm start', '/dev/null'], {
      cwd: root,
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    });
    r.terminal.stdout?.on('data', (d: Buffer) => (r.output += d.toString()));
    r.terminal.stderr?.on('data', (d: Buffer) => (r.output += d.toString()));
    r.kubeconfigPath = await until(
      'npm start to say kova is running',
      () => {
        if (r.terminal.exitCode !== null) throw new Error(`npm start ended early:\n${r.output}`);
        return (
          r.output.includes('kova is running') && /export KUBECONFIG=(\S+)/.exec(r.output)?.[1]
        );
      },
      240_000,
      250,
    );
    r.api = loadKubeConfig(r.kubeconfigPath).makeApiClient(CustomObjectsApi);
    r.cpDir = dirname(r.kubeconfigPath);
    r.runPid = await findProcess(r.terminal.pid as number, 'hack/dist/cli/run.js');
    const agent = await findProcess(r.runPid, 'node-agent/dist/main.js');
    r.stateDir = (await environOf(agent)).KOVA_STATE_DIR as string;
    return r;
  }

  /** The pid of one of its processes, by a part of its command line. */
  pidOf(part: string): Promise<number> {
    return findProcess(this.runPid, part);
  }

  processes(): Promise<number[]> {
    return descendants(this.runPid);
  }

  /** The terminal window closes. */
  closeTerminal(): void {
    this.terminal.kill('SIGKILL');
  }

  /** Leaves nothing running if a test failed before its end. */
  abandon(): void {
    if (this.terminal?.exitCode === null) this.terminal.kill('SIGKILL');
  }

  finished(timeoutMs = 180_000): Promise<true> {
    return until('npm start to finish', () => !existsSync(`/proc/${this.runPid}`), timeoutMs, 250);
  }

  async instances(): Promise<InstanceObject[]> {
    const list = await this.api.listClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: 'instances',
    });
    return (list as { items: InstanceObject[] }).items;
  }

  async create(namespace: string, name: string): Promise<void> {
    await this.api.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: 'instances',
      namespace,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'Instance',
        metadata: { name, namespace },
        spec: { flavor: 'm1.nano', image: 'kova-guest', networks: [{ network: 'default' }] },
      },
    });
  }

  /** Whatever of the run is still on this host: domains, taps, bridge, rules, dirs, processes. */
  async leftovers(uids: string[], pids: number[]): Promise<string[]> {
    const left: string[] = [];
    for (const uid of uids) {
      const state = await run('virsh', ['-c', 'qemu:///system', 'domstate', uid]).then(
        (r) => r.stdout.trim(),
        () => undefined,
      );
      if (state) left.push(`domain ${uid} ${state}`);
      const tap = `kv${uid.replace(/-/g, '').slice(0, 12)}0`;
      if (await hasLink(tap)) left.push(`tap ${tap}`);
    }
    if (!this.bridgeBefore) {
      if (await hasLink(BRIDGE)) left.push(`bridge ${BRIDGE}`);
      // The agent's nftables rules for the bridge go with it.
      const rules = await run('nft', ['list', 'ruleset']);
      if (rules.stdout.includes(`"${BRIDGE}"`)) left.push(`nftables rules naming ${BRIDGE}`);
    }
    for (const dir of [this.stateDir, this.cpDir]) if (existsSync(dir)) left.push(`dir ${dir}`);
    left.push(...(await processesNaming([this.stateDir, this.cpDir])).map((p) => `process ${p}`));
    for (const p of pids) if (existsSync(`/proc/${p}`)) left.push(`pid ${p}`);
    return left;
  }
}
