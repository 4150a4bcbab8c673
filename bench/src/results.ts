// Every benchmark ends the same way: its rows printed as a table, and bench/results/<name>.json
// written with the rows, the raw samples, this machine and the versions measured.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Row {
  measure: string;
  value: string;
  goal?: string;
}

export const resultsDir = join(resolve(dirname(fileURLToPath(import.meta.url)), '..'), 'results');

export function table(rows: Row[]): string {
  const w = Math.max(...rows.map((r) => r.measure.length), 7);
  const v = Math.max(...rows.map((r) => r.value.length), 5);
  const line = (a: string, b: string, c: string) =>
    `| ${a.padEnd(w)} | ${b.padStart(v)} | ${c.padEnd(6)} |`;
  return [
    line('measure', 'value', 'goal'),
    `|${'-'.repeat(w + 2)}|${'-'.repeat(v + 1)}:|--------|`,
    ...rows.map((r) => line(r.measure, r.value, r.goal ?? '')),
  ].join('\n');
}

function versions(): Record<string, string> {
  const first = (cmd: string, args: string[]) => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8' }).split('\n')[0] ?? '';
    } catch {
      return 'not installed';
    }
  };
  const bin = join(process.env.KOVA_CACHE ?? join(process.env.HOME ?? '', '.cache', 'kova'), 'bin');
  return {
    node: process.version,
    qemu: first('qemu-system-x86_64', ['--version']),
    libvirt: first('virsh', ['--version']),
    kubernetes: first(join(bin, 'kube-apiserver'), ['--version']),
  };
}

export function writeResult(name: string, rows: Row[], raw: Record<string, unknown>): void {
  process.stdout.write(`\n${name}\n${table(rows)}\n`);
  mkdirSync(resultsDir, { recursive: true });
  const machine = { cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryBytes: totalmem() };
  writeFileSync(
    join(resultsDir, `${name}.json`),
    `${JSON.stringify({ name, when: new Date().toISOString(), machine, versions: versions(), rows, raw }, null, 2)}\n`,
  );
}

/** Every result on disk, in the order given, as one table. */
export function combinedTable(order: string[]): string {
  const files = readdirSync(resultsDir).filter((f) => f.endsWith('.json'));
  const rows = order
    .filter((n) => files.includes(`${n}.json`))
    .flatMap(
      (n) =>
        (JSON.parse(readFileSync(join(resultsDir, `${n}.json`), 'utf8')) as { rows?: Row[] })
          .rows ?? [],
    );
  return table(rows);
}
