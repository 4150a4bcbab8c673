// Every benchmark ends the same way: its rows printed as a table, and bench/results/<name>.json
// written with the rows, the raw samples, this machine and the versions measured; beside it a
// chart, bench/results/<name>.svg. Both are a local run's results, kept out of git.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
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

/** A table with columns of its own, e.g. the same measures for several schedulers. */
export interface Grid {
  title: string;
  header: string[];
  rows: string[][];
}

export function gridTable(g: Grid): string {
  const widths = g.header.map((h, i) =>
    Math.max(h.length, ...g.rows.map((r) => (r[i] ?? '').length)),
  );
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join(' | ')} |`;
  return [
    g.title,
    line(g.header),
    `|${widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`,
    ...g.rows.map(line),
  ].join('\n');
}

export function writeChart(name: string, svg: string): string {
  mkdirSync(resultsDir, { recursive: true });
  const path = join(resultsDir, `${name}.svg`);
  writeFileSync(path, svg);
  process.stdout.write(`chart: ${path}\n`);
  return path;
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

export function writeResult(
  name: string,
  rows: Row[],
  raw: Record<string, unknown>,
  grids: Grid[] = [],
): void {
  process.stdout.write(`\n${name}\n${table(rows)}\n`);
  for (const g of grids) process.stdout.write(`\n${gridTable(g)}\n`);
  mkdirSync(resultsDir, { recursive: true });
  const machine = { cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryBytes: totalmem() };
  writeFileSync(
    join(resultsDir, `${name}.json`),
    `${JSON.stringify({ name, when: new Date().toISOString(), machine, loadavg: loadavg(), versions: versions(), rows, grids, raw }, null, 2)}\n`,
  );
}

/** Every result on disk, in the order given, as one table, then each result's own grids. */
export function combinedTable(order: string[]): string {
  const files = readdirSync(resultsDir).filter((f) => f.endsWith('.json'));
  const results = order
    .filter((n) => files.includes(`${n}.json`))
    .map(
      (n) =>
        JSON.parse(readFileSync(join(resultsDir, `${n}.json`), 'utf8')) as {
          rows?: Row[];
          grids?: Grid[];
        },
    );
  return [
    table(results.flatMap((r) => r.rows ?? [])),
    ...results.flatMap((r) => r.grids ?? []).map(gridTable),
  ].join('\n\n');
}
