// `npm start` as a user runs it, in a terminal (a pty from script(1)): it boots the demo, takes
// the user's own Instances, restarts a component that was killed, and when the terminal is
// closed (SIGHUP, the operator killed just before) removes every Instance and stops everything.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
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
const BRIDGE = 'kova-br0';

let terminal: ChildProcess;
let output = '';
let api: CustomObjectsApi;
let kubeconfigPath: string;
let runPid: number;
let stateDir: string;
let cpDir: string;
let bridgeBefore: boolean;

const operatorPid = () => findProcess(runPid, 'operator/dist/main.js');
const hasLink = (name: string) =>
  run('ip', ['-o', 'link', 'show', 'dev', name]).then(
    () => true,
    () => false,
  );

beforeAll(async () => {
  bridgeBefore = await hasLink(BRIDGE);
  // A pty, as a terminal gives: killing script(1) closes it, and the kernel hangs up the session.
  terminal = spawn('script', ['-qfec', 'npm start', '/dev/null'], {
    cwd: root,
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true,
  });
  terminal.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  terminal.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  kubeconfigPath = await until(
    'npm start to say kova is running',
    () => {
      if (terminal.exitCode !== null) throw new Error(`npm start ended early:\n${output}`);
      return output.includes('kova is running') && /export KUBECONFIG=(\S+)/.exec(output)?.[1];
    },
    240_000,
    250,
  );
  api = loadKubeConfig(kubeconfigPath).makeApiClient(CustomObjectsApi);
  cpDir = dirname(kubeconfigPath);
  runPid = await findProcess(terminal.pid as number, 'hack/dist/cli/run.js');
  const agent = await findProcess(runPid, 'node-agent/dist/main.js');
  stateDir = (await environOf(agent)).KOVA_STATE_DIR as string;
}, 300_000);

afterAll(() => {
  // Only if a test failed before the hang-up: the run must not outlive the suite.
  if (terminal?.exitCode === null) terminal.kill('SIGKILL');
});

const instances = async () =>
  (
    (await api.listClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: 'instances',
    })) as {
      items: InstanceObject[];
    }
  ).items;

async function create(namespace: string, name: string): Promise<void> {
  await api.createNamespacedCustomObject({
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

describe('npm start', () => {
  it('boots the demo Instance and shows its serial console and HTTP answer', () => {
    expect(output).toMatch(/✓ Active after [\d.]+ s — 10\.77\.0\.\d+ on \S+, power Running/);
    expect(output).toMatch(/serial console: kova-guest: instance-id=[0-9a-f-]{36} hostname=demo/);
    expect(output).toMatch(/http:\/\/10\.77\.0\.\d+\/ answers: [0-9a-f-]{36}/);
  });

  it("restarts the operator after kill -9, and the new one runs the user's Instances", async () => {
    const killed = await operatorPid();
    process.kill(killed, 'SIGKILL');
    const restarted = await until(
      'a new operator',
      async () => {
        const pid = await operatorPid().catch(() => undefined);
        return pid !== killed && pid;
      },
      30_000,
      200,
    );
    expect(restarted).not.toBe(killed);
    expect(output).toContain('operator exited; restarting it');
    // The user's own Instances, in default and in a namespace of their own.
    await loadKubeConfig(kubeconfigPath)
      .makeApiClient(CoreV1Api)
      .createNamespace({ body: { metadata: { name: 'team-a' } } });
    for (const [ns, name] of [
      ['default', 'mine-1'],
      ['default', 'mine-2'],
      ['team-a', 'theirs'],
    ] as const)
      await create(ns, name);
    await until(
      'every Instance Active',
      async () => (await instances()).every((i) => i.status?.phase === 'Active'),
      120_000,
      250,
    );
    expect((await instances()).map((i) => i.metadata.name).sort()).toEqual([
      'demo',
      'mine-1',
      'mine-2',
      'theirs',
    ]);
  });

  it('closing its terminal with the operator killed removes every Instance and all of the run', async () => {
    const uids = (await instances()).map((i) => i.metadata.uid);
    const pids = await descendants(runPid);
    process.kill(await operatorPid(), 'SIGKILL');
    terminal.kill('SIGKILL'); // the terminal window closes: the kernel sends SIGHUP
    await until('npm start to finish', () => !existsSync(`/proc/${runPid}`), 180_000, 250);

    for (const uid of uids) {
      const state = await run('virsh', ['-c', 'qemu:///system', 'domstate', uid]).then(
        (r) => r.stdout.trim(),
        () => undefined,
      );
      expect({ uid, state }).toEqual({ uid, state: undefined });
      expect(await hasLink(`kv${uid.replace(/-/g, '').slice(0, 12)}0`)).toBe(false);
    }
    if (!bridgeBefore) expect(await hasLink(BRIDGE)).toBe(false);
    expect(existsSync(stateDir)).toBe(false);
    expect(existsSync(cpDir)).toBe(false);
    expect(await processesNaming([stateDir, cpDir])).toEqual([]);
    expect(pids.filter((p) => existsSync(`/proc/${p}`))).toEqual([]);
  }, 200_000);
});
