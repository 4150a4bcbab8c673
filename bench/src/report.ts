// `npm run bench` ends here: every benchmark's latest rows as one table, then the tables with
// columns of their own (kova and kube-scheduler side by side), and where the charts are.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { combinedTable, resultsDir } from './results.js';

const charts = readdirSync(resultsDir)
  .filter((f) => f.endsWith('.svg'))
  .map((f) => `  ${join(resultsDir, f)}`);
process.stdout.write(
  `\nkova benchmarks (bench/results/*.json)\n${combinedTable(['boot-latency', 'density-test', 'density-qemu', 'scheduler-throughput'])}\n\ncharts:\n${charts.join('\n')}\n`,
);
