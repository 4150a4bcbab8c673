// What one local run of kova put on this host, found and removed without the API: its libvirt
// domains (kova metadata naming one of its nodes, disks in one of its state dirs), their taps,
// the bridges it created, kova's nftables tables when the run created them, its temporary
// directories and any process still using them. Teardown removes these directly only when the
// agent could not, and then checks that none is left.
import { execFile } from 'node:child_process';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);
const VIRSH = ['-c', 'qemu:///system'];

export interface RunFootprint {
  /** The node names its agents acted as. */
  nodes: string[];
  /** Its agents' state dirs: a domain of this run has its disks there. */
  stateDirs: string[];
  /** Every temporary directory it made (state dirs, the control plane's). */
  tempDirs: string[];
  /** Instance UIDs it knew of: their taps are named after them. */
  uids: Set<string>;
  /** Bridges of its Networks that did not exist before it started. */
  bridges: string[];
  /** kova's nftables tables ("inet kova", "bridge kova") it created: absent before it started. */
  tables: string[];
}

/** What the host had before a run: what the run finds then is not the run's to remove. */
export interface HostBefore {
  bridges: Set<string>;
  tables: Set<string>;
  /** Whether IPv4 forwarding was on (an agent turns it on for a Network with egress). */
  ipForward: boolean;
}

const IP_FORWARD = '/proc/sys/net/ipv4/ip_forward';

async function ipForwardOn(): Promise<boolean> {
  return (await readFile(IP_FORWARD, 'utf8')).trim() === '1';
}

/** Turns IPv4 forwarding off again if it was off before the run. */
export async function restoreIpForward(before: HostBefore): Promise<void> {
  if (!before.ipForward && (await ipForwardOn())) await writeFile(IP_FORWARD, '0');
}

export type LeftoverKind = 'domain' | 'tap' | 'table' | 'bridge' | 'directory' | 'process';

export interface Leftover {
  kind: LeftoverKind;
  name: string;
}

export async function findLeftovers(fp: RunFootprint): Promise<Leftover[]> {
  const domains = await domainsOf(fp);
  for (const d of domains) fp.uids.add(d.uid);
  return [
    ...domains.map((d) => ({ kind: 'domain' as const, name: d.name })),
    ...(await tapsOf(fp.uids)).map((name) => ({ kind: 'tap' as const, name })),
    ...(await tablesNow())
      .filter((t) => fp.tables.includes(t))
      .map((name) => ({ kind: 'table' as const, name })),
    ...(await existingBridges(fp.bridges)).map((name) => ({ kind: 'bridge' as const, name })),
    ...(await existing(fp.tempDirs)).map((name) => ({ kind: 'directory' as const, name })),
    ...(await processesUsing(fp.tempDirs)).map((name) => ({ kind: 'process' as const, name })),
  ];
}

/**
 * Removes domains, taps and bridges directly (virsh, ip): the last resort when the agent could
 * not. A bridge that still has ports belongs to someone else too and stays.
 */
export async function removeLeftovers(leftovers: Leftover[]): Promise<void> {
  for (const { kind, name } of leftovers) {
    if (kind === 'domain') {
      await run('virsh', [...VIRSH, 'destroy', name]).catch(ignoreShutOff);
      await run('virsh', [...VIRSH, 'undefine', name, '--nvram']).catch(() =>
        run('virsh', [...VIRSH, 'undefine', name]),
      );
    }
  }
  for (const { kind, name } of leftovers) {
    if (kind === 'tap') await run('ip', ['link', 'delete', 'dev', name]).catch(ignoreGone);
  }
  for (const { kind, name } of leftovers) {
    if (kind === 'table') await run('nft', ['delete', 'table', ...name.split(' ')]);
  }
  for (const { kind, name } of leftovers) {
    if (kind === 'bridge' && (await bridgePorts(name)).length === 0)
      await run('ip', ['link', 'delete', 'dev', name]).catch(ignoreGone);
  }
}

/** What the host has now, so that teardown removes only what appears later. */
export async function hostNow(): Promise<HostBefore> {
  return {
    bridges: await bridgesNow(),
    tables: new Set(await tablesNow()),
    ipForward: await ipForwardOn(),
  };
}

/** Bridges present now. */
export async function bridgesNow(): Promise<Set<string>> {
  const { stdout } = await run('ip', ['-o', 'link', 'show', 'type', 'bridge']);
  return new Set([...stdout.matchAll(/^\d+: ([^:@]+)[:@]/gm)].map((m) => m[1] as string));
}

interface RunDomain {
  name: string;
  uid: string;
}

async function domainsOf(fp: RunFootprint): Promise<RunDomain[]> {
  const { stdout } = await run('virsh', [...VIRSH, 'list', '--all', '--name']);
  const found: RunDomain[] = [];
  for (const name of stdout.split('\n').filter(Boolean)) {
    const xml = await run('virsh', [...VIRSH, 'dumpxml', name]).then(
      (r) => r.stdout,
      () => '', // undefined meanwhile
    );
    const owner = /<kova:instance\b[^>]*>/.exec(xml)?.[0];
    const node = owner && /\bnode="([^"]*)"/.exec(owner)?.[1];
    const uid = owner && /\buid="([^"]*)"/.exec(owner)?.[1];
    if (!node || !uid || !fp.nodes.includes(node)) continue;
    const disks = [...xml.matchAll(/<source file=['"]([^'"]+)['"]/g)].map((m) => m[1] as string);
    if (disks.some((d) => fp.stateDirs.some((dir) => d.startsWith(`${dir}/`))))
      found.push({ name, uid });
  }
  return found;
}

/** Taps are "kv" + the first 12 hex digits of the Instance UID + the NIC index. */
async function tapsOf(uids: Set<string>): Promise<string[]> {
  const prefixes = [...uids].map((u) => `kv${u.replace(/-/g, '').slice(0, 12)}`);
  const { stdout } = await run('ip', ['-o', 'link', 'show']);
  return [...stdout.matchAll(/^\d+: ([^:@]+)[:@]/gm)]
    .map((m) => m[1] as string)
    .filter((name) => prefixes.some((p) => name.startsWith(p) && name.length <= p.length + 1));
}

/** kova's nftables tables present now, as "<family> kova" (node-agent network/ruleset.ts). */
export async function tablesNow(): Promise<string[]> {
  const { stdout } = await run('nft', ['list', 'tables']);
  return [...stdout.matchAll(/^table (\w+) kova$/gm)].map((m) => `${m[1]} kova`);
}

async function existingBridges(names: string[]): Promise<string[]> {
  const now = await bridgesNow();
  return names.filter((n) => now.has(n));
}

async function bridgePorts(bridge: string): Promise<string[]> {
  const { stdout } = await run('ip', ['-o', 'link', 'show', 'master', bridge]).catch(() => ({
    stdout: '',
  }));
  return stdout.split('\n').filter(Boolean);
}

async function existing(paths: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const p of paths) if (await stat(p).then(() => true, ignoreMissing)) out.push(p);
  return out;
}

/**
 * Processes (QEMU, etcd, an agent…) whose command line or environment names one of the dirs.
 * KUBECONFIG does not count: the user's shells and kubectl carry the run's kubeconfig, as the
 * run told them to, and are not the run's.
 */
async function processesUsing(dirs: string[]): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    const environ = (await readFile(`/proc/${pid}/environ`, 'utf8').catch(() => ''))
      .split('\0')
      .filter((v) => !v.startsWith('KUBECONFIG='))
      .join('\0');
    if (dirs.some((d) => cmdline.includes(d) || environ.includes(d)))
      found.push(`${pid} ${cmdline.split('\0').filter(Boolean).slice(0, 3).join(' ')}`);
  }
  return found;
}

function ignoreShutOff(err: { stderr?: string }): void {
  if (!/not running/.test(err.stderr ?? '')) throw err;
}

function ignoreGone(err: { stderr?: string }): void {
  if (!/Cannot find device/.test(err.stderr ?? '')) throw err;
}

function ignoreMissing(err: NodeJS.ErrnoException): boolean {
  if (err.code !== 'ENOENT') throw err;
  return false;
}
