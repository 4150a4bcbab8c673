// What one local run of kova put on this host, found and removed without the API: its libvirt
// domains (kova metadata naming one of its nodes, disks in one of its state dirs), their taps,
// the bridges it created with the agent's iptables rules for them (and kova's guard chains, once
// empty, when the run created them), its temporary directories and any process still using
// them. Teardown
// removes these directly only when the agent could not, and then checks that none is left.
import { execFile } from 'node:child_process';
import { readdir, readFile, stat } from 'node:fs/promises';
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
  /** kova's guard chains it created (they did not exist before it started). */
  chains: string[];
}

/** What the host had before a run: what the run finds then is not the run's to remove. */
export interface HostBefore {
  bridges: Set<string>;
  chains: Set<string>;
}

export type LeftoverKind = 'domain' | 'tap' | 'rule' | 'chain' | 'bridge' | 'directory' | 'process';

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
    ...(await guardRulesOf(fp.bridges)).map((name) => ({ kind: 'rule' as const, name })),
    ...(await emptyChains(fp.chains)).map((name) => ({ kind: 'chain' as const, name })),
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
    const [tool, ...rule] = name.split(' ');
    if (kind === 'rule') await run(tool as string, ['-w', '-D', ...rule.slice(1)]);
  }
  for (const { kind, name } of leftovers) {
    if (kind === 'chain') await removeChain(name);
  }
  for (const { kind, name } of leftovers) {
    if (kind === 'bridge' && (await bridgePorts(name)).length === 0)
      await run('ip', ['link', 'delete', 'dev', name]).catch(ignoreGone);
  }
}

/** What the host has now, so that teardown removes only what appears later. */
export async function hostNow(): Promise<HostBefore> {
  const chains = new Set<string>();
  for (const chain of GUARD_CHAINS)
    if (await run('iptables', ['-w', '-S', chain]).then(() => true, absent)) chains.add(chain);
  return { bridges: await bridgesNow(), chains };
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

/** The agent guards each managed bridge with rules in kova's chains (node-agent host-guard). */
const GUARD_CHAINS = ['KOVA-INPUT', 'KOVA-FORWARD'];
const GUARD_PARENT: Record<string, string> = { 'KOVA-INPUT': 'INPUT', 'KOVA-FORWARD': 'FORWARD' };
const IPTABLES = ['iptables', 'ip6tables'];

/** "<tool> <rule as iptables -S prints it>" for each rule of kova's chains naming a bridge. */
async function guardRulesOf(bridges: string[]): Promise<string[]> {
  const found: string[] = [];
  for (const tool of IPTABLES)
    for (const chain of GUARD_CHAINS)
      for (const line of await chainRules(tool, chain))
        if (bridges.some((b) => line.includes(` -i ${b} `))) found.push(`${tool} ${line}`);
  return found;
}

/** The run's chains once no rule is left in them, in either family. */
async function emptyChains(chains: string[]): Promise<string[]> {
  const found: string[] = [];
  for (const chain of chains) {
    const rules = await Promise.all(IPTABLES.map((t) => chainRules(t, chain, true)));
    if (rules.some((r) => r !== undefined) && rules.every((r) => !r?.length)) found.push(chain);
  }
  return found;
}

/** The rules of a chain as `-A …` lines; undefined (when asked) if the chain does not exist. */
async function chainRules(tool: string, chain: string): Promise<string[]>;
async function chainRules(
  tool: string,
  chain: string,
  orAbsent: true,
): Promise<string[] | undefined>;
async function chainRules(tool: string, chain: string, orAbsent = false) {
  const out = await run(tool, ['-w', '-S', chain]).then((r) => r.stdout, absent);
  if (out === false) return orAbsent ? undefined : [];
  return out.split('\n').filter((l) => l.startsWith('-A '));
}

async function removeChain(chain: string): Promise<void> {
  for (const tool of IPTABLES) {
    if ((await chainRules(tool, chain, true)) === undefined) continue;
    await run(tool, ['-w', '-D', GUARD_PARENT[chain] as string, '-j', chain]).catch(noSuchRule);
    await run(tool, ['-w', '-X', chain]);
  }
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

/** iptables -S fails on a chain that does not exist: that is the answer, not an error. */
function absent(err: { stderr?: string }): false {
  if (!/No chain|does not exist|is incompatible/i.test(err.stderr ?? '')) throw err;
  return false;
}

function noSuchRule(err: { stderr?: string }): void {
  if (!/Bad rule|does a matching rule exist|No chain/i.test(err.stderr ?? '')) throw err;
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
