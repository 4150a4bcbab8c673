// The node lab, real parts: two nodes on this machine, each with its own namespaces, libvirtd
// and agent, against the jest run's control plane. Checked as a user would: the Hypervisors
// and their heartbeats in the API, `virsh` inside each node and on the host, HTTP across the
// underlay, `ip link` and the recorded pids after a kill and after stop().
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { CoordinationV1Api, CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { apiStatus, loadKubeConfig, logger } from '@kova/controller-kit';
import { GROUP, VERSION } from '@kova/crds';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { NodeLab, removeAbandonedLabs, type LabNodePids } from './lab.js';
import { until } from './until.js';

const run = promisify(execFile);
const kc = loadKubeConfig(process.env.KUBECONFIG);
const custom = kc.makeApiClient(CustomObjectsApi);
const leases = kc.makeApiClient(CoordinationV1Api);
const core = kc.makeApiClient(CoreV1Api);
const SYSTEM_NS = 'kova-system';
const [A, B, ORPHAN] = ['lab-a', 'lab-b', 'lab-orphan'];
const labCli = join(resolve(dirname(fileURLToPath(import.meta.url)), '..'), 'dist', 'lab-cli.js');
const log = logger('lab-test');
const HEARTBEAT_SECONDS = 2;

let lab: NodeLab;
const servers: ChildProcess[] = [];

const alive = (pid: number) => existsSync(`/proc/${pid}`);
const allPids = (p: LabNodePids) => [p.init, p.virtlogd, p.libvirtd, p.agent];

async function renewTime(node: string): Promise<number> {
  const lease = await leases.readNamespacedLease({ name: node, namespace: SYSTEM_NS });
  return new Date(lease.spec?.renewTime ?? 0).getTime();
}

async function virshList(node?: string): Promise<string[]> {
  const argv = ['virsh', '-c', 'qemu:///system', 'list', '--all', '--name'];
  const { stdout } = node
    ? await lab.exec(node, argv)
    : await run(argv[0] as string, argv.slice(1));
  return stdout.split('\n').filter(Boolean);
}

/** What `curl` from inside `from` gets from url, or the reason it got nothing. */
async function curlFrom(from: string, url: string): Promise<string> {
  return lab.exec(from, ['curl', '-sS', '--max-time', '2', url]).then(
    (r) => r.stdout,
    (err: { stderr?: string }) => `failed: ${err.stderr ?? String(err)}`,
  );
}

/** The network namespaces (by inode) that some process still holds. */
async function liveNetNamespaces(): Promise<Set<number>> {
  const found = new Set<number>();
  for (const e of await readdir('/proc')) {
    if (!Number(e)) continue;
    await stat(`/proc/${e}/ns/net`).then(
      (s) => found.add(s.ino),
      () => undefined,
    );
  }
  return found;
}

beforeAll(async () => {
  await core.createNamespace({ body: { metadata: { name: SYSTEM_NS } } }).catch((err) => {
    if (apiStatus(err) !== 409) throw err;
  });
  lab = await NodeLab.start({
    log,
    nodes: [A, B],
    agentEnv: { KOVA_HEARTBEAT_SECONDS: String(HEARTBEAT_SECONDS) },
  });
}, 90_000);

afterAll(async () => {
  for (const s of servers) s.kill();
  await lab?.stop();
  for (const name of [A, B, ORPHAN]) {
    await custom
      .deleteClusterCustomObject({ group: GROUP, version: VERSION, plural: 'hypervisors', name })
      .catch(() => undefined);
    await leases.deleteNamespacedLease({ name, namespace: SYSTEM_NS }).catch(() => undefined);
  }
});

describe('node lab', () => {
  it("registers each node's Hypervisor with a live heartbeat, reported by its own libvirtd", async () => {
    for (const name of [A, B]) {
      const hv = await until(
        `Hypervisor ${name} reported`,
        async () => {
          const obj = (await custom
            .getClusterCustomObject({ group: GROUP, version: VERSION, plural: 'hypervisors', name })
            .catch(() => undefined)) as { status?: { libvirtVersion?: string } } | undefined;
          return obj?.status?.libvirtVersion ? obj : undefined;
        },
        60_000,
        250,
      );
      expect(hv.status?.libvirtVersion).toMatch(/^\d+\.\d+/);
      const lease = await leases.readNamespacedLease({ name, namespace: SYSTEM_NS });
      expect(lease.spec?.holderIdentity).toBe(name);
      expect(Date.now() - (await renewTime(name))).toBeLessThan(3 * HEARTBEAT_SECONDS * 1000);
    }
  });

  it('gives each node a libvirtd of its own: a domain defined on A is seen neither by B nor by the host', async () => {
    const hostLibvirtd = Number(await readFile('/run/libvirtd.pid', 'utf8'));
    const [a, b] = [lab.node(A).pids, lab.node(B).pids];
    expect(new Set([hostLibvirtd, a.libvirtd, b.libvirtd]).size).toBe(3);
    const name = `lab-probe-${process.pid}`;
    const xml = `<domain type='qemu'><name>${name}</name><memory unit='MiB'>32</memory><os><type arch='x86_64'>hvm</type></os></domain>`;
    await lab.exec(A, [
      'bash',
      '-c',
      `virsh -c qemu:///system define /dev/stdin <<'EOF'\n${xml}\nEOF`,
    ]);
    expect(await virshList(A)).toContain(name);
    expect(await virshList(B)).not.toContain(name);
    expect(await virshList()).not.toContain(name);
  });

  it('partition cuts a node off the underlay and heal restores it', async () => {
    const { underlayIp } = lab.node(B);
    const server = lab.spawn(B, [
      process.execPath,
      '-e',
      `require('http').createServer((q, s) => s.end('${B}')).listen(8080, '${underlayIp}')`,
    ]);
    servers.push(server);
    const url = `http://${underlayIp}:8080/`;
    await until(
      `${B} answering ${A} across the underlay`,
      async () => (await curlFrom(A, url)) === B,
      10_000,
      200,
    );

    await lab.partition(A);
    expect(await curlFrom(A, url)).toMatch(/^failed/);
    expect(await curlFrom(A, `https://${lab.gatewayIp}:1/`)).toMatch(/^failed/);

    await lab.heal(A);
    await until(
      `${B} answering ${A} after heal`,
      async () => (await curlFrom(A, url)) === B,
      10_000,
      200,
    );
  });

  it('kill takes a whole node down at once and its heartbeat goes stale; the other node stays up', async () => {
    const [a, b] = [lab.node(A).pids, lab.node(B).pids];
    for (const pid of [...allPids(a), ...allPids(b)]) expect(alive(pid)).toBe(true);
    await lab.kill(B);
    for (const pid of allPids(b)) expect(alive(pid)).toBe(false);
    for (const pid of allPids(a)) expect(alive(pid)).toBe(true);
    const [killedAt, lastB] = [Date.now(), await renewTime(B)];
    // A renews at least twice more; B never again.
    await until(
      `${A} renewing its heartbeat after ${B} was killed`,
      async () => (await renewTime(A)) > killedAt + HEARTBEAT_SECONDS * 1000,
      15_000,
      250,
    );
    expect(await renewTime(B)).toBe(lastB);
    expect(Date.now() - lastB).toBeGreaterThan(2 * HEARTBEAT_SECONDS * 1000);
    await expect(lab.exec(B, ['true'])).rejects.toThrow(/not running/);
  });

  it('restart brings a killed node back with new daemons and agent, and its heartbeat resumes', async () => {
    const before = { ...lab.node(B).pids };
    await lab.restart(B);
    const after = lab.node(B).pids;
    for (const pid of allPids(after)) expect(alive(pid)).toBe(true);
    expect(after.libvirtd).not.toBe(before.libvirtd);
    const restartedAt = Date.now();
    await until(
      `${B} renewing its heartbeat after restart`,
      async () => (await renewTime(B)) >= restartedAt - 1000,
      20_000,
      250,
    );
    expect(await virshList(B)).toEqual([]);
  });

  it('stop leaves no namespace, link, daemon, process or directory behind', async () => {
    const a = lab.node(A);
    const netns = (await stat(`/proc/${a.pids.init}/ns/net`)).ino;
    const pids = [...allPids(a.pids), ...allPids(lab.node(B).pids)];
    const hostLibvirtd = Number(await readFile('/run/libvirtd.pid', 'utf8'));
    await lab.stop();
    for (const pid of pids) expect(alive(pid)).toBe(false);
    expect((await liveNetNamespaces()).has(netns)).toBe(false);
    const links = (await run('ip', ['-o', 'link'])).stdout;
    expect(links).not.toContain(lab.rootLink);
    expect((await run('ip', ['netns', 'list'])).stdout).not.toMatch(/lab/);
    expect(existsSync(lab.dir)).toBe(false);
    // The host's libvirtd was never touched.
    expect(alive(hostLibvirtd)).toBe(true);
    expect(await virshList()).toBeDefined();
  });
});

describe('a lab whose starter is killed with -9', () => {
  it('dies with its starter, and the next start removes the directory it left', async () => {
    const starter = spawn(process.execPath, [labCli, ORPHAN], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const lines: Record<string, unknown>[] = [];
    for await (const line of createInterface({ input: starter.stdout })) {
      lines.push(JSON.parse(line) as Record<string, unknown>);
      if (lines.at(-1)?.ready) break;
    }
    const node = lines.find((l) => l.node === ORPHAN) as { pids: LabNodePids } | undefined;
    const { dir, rootLink } = lines.at(-1) as { dir: string; rootLink: string };
    expect(node).toBeDefined();
    for (const pid of allPids(node!.pids)) expect(alive(pid)).toBe(true);

    process.kill(starter.pid as number, 'SIGKILL');
    await until(
      'every process of the orphaned node gone',
      () => allPids(node!.pids).every((pid) => !alive(pid)),
      10_000,
      100,
    );
    await until(
      `link ${rootLink} gone with the switch`,
      async () => !(await run('ip', ['-o', 'link'])).stdout.includes(rootLink),
      10_000,
      100,
    );
    // Only the directory is left, for the next start to remove.
    expect(existsSync(dir)).toBe(true);
    await removeAbandonedLabs(log);
    expect(existsSync(dir)).toBe(false);
  });
});
