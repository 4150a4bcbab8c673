// Processes seen from /proc: CPU seconds used and resident memory, to say where time and
// memory go during a benchmark.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const TICKS = 100; // USER_HZ on Linux

export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / TICKS;
}

export function rssMiB(pid: number): number {
  const line =
    readFileSync(`/proc/${pid}/status`, 'utf8')
      .split('\n')
      .find((l) => l.startsWith('VmRSS:')) ?? '';
  return Number(line.replace(/\D+/g, '')) / 1024;
}

/** Pids of processes named `comm` whose command line contains `text`. */
export function pidsOf(comm: string, text: string): number[] {
  try {
    return execFileSync('pgrep', ['-x', comm, '-a'], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.includes(text))
      .map((l) => Number(l.split(' ')[0]));
  } catch {
    return [];
  }
}
