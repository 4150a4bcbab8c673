// The processes of a run as /proc shows them: a process tree, a command line, an environment,
// and every process that names a path (QEMU its disks, etcd its data dir, an agent its state).
import { readdir, readFile } from 'node:fs/promises';

async function pids(): Promise<number[]> {
  return (await readdir('/proc')).filter((p) => /^\d+$/.test(p)).map(Number);
}

/** Every process below `pid`, however deep. */
export async function descendants(pid: number): Promise<number[]> {
  const children = new Map<number, number[]>();
  for (const p of await pids()) {
    const stat = await readFile(`/proc/${p}/stat`, 'utf8').catch(() => '');
    // The command name in parentheses may hold spaces: the parent pid follows its last ")".
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    children.set(ppid, [...(children.get(ppid) ?? []), p]);
  }
  const found: number[] = [];
  for (let queue = [pid]; queue.length;) {
    const next = children.get(queue.shift() as number) ?? [];
    found.push(...next);
    queue.push(...next);
  }
  return found;
}

export async function cmdlineOf(pid: number): Promise<string> {
  return (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0').join(' ');
}

/** The one process below `pid` whose command line contains `part`; rejects when there is none. */
export async function findProcess(pid: number, part: string): Promise<number> {
  for (const p of await descendants(pid)) if ((await cmdlineOf(p)).includes(part)) return p;
  throw new Error(`no process running ${part} below ${pid}`);
}

export async function environOf(pid: number): Promise<Record<string, string>> {
  const text = await readFile(`/proc/${pid}/environ`, 'utf8');
  return Object.fromEntries(
    text
      .split('\0')
      .filter(Boolean)
      .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
  );
}

/** "pid command" of each process whose command line or environment contains one of `paths`. */
export async function processesNaming(paths: string[]): Promise<string[]> {
  const found: string[] = [];
  for (const p of await pids()) {
    if (p === process.pid) continue;
    const cmdline = await cmdlineOf(p);
    const environ = await readFile(`/proc/${p}/environ`, 'utf8').catch(() => '');
    if (paths.some((d) => cmdline.includes(d) || environ.includes(d)))
      found.push(`${p} ${cmdline}`);
  }
  return found;
}
