// `npm run bench` ends here: every benchmark's latest rows as one table.
import { combinedTable } from './results.js';

process.stdout.write(
  `\nkova benchmarks (bench/results/*.json)\n${combinedTable(['boot-latency', 'density-test', 'density-qemu', 'scheduler-throughput'])}\n`,
);
