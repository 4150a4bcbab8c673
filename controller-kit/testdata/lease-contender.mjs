// A leader-election candidate in its own process, so a test can kill it with SIGKILL.
// Prints one JSON line per transition; SIGTERM releases the Lease and exits.
import { LeaderElector, loadKubeConfig } from '../dist/index.js';

const [lease, namespace, identity] = process.argv.slice(2);
const say = (event) =>
  process.stdout.write(`${JSON.stringify({ event, identity, at: Date.now() })}\n`);
const elector = new LeaderElector(loadKubeConfig(), {
  lease,
  namespace,
  identity,
  leaseDurationMs: 3000,
  renewDeadlineMs: 2000,
  retryPeriodMs: 250,
  onStartedLeading: () => say('leading'),
  onStoppedLeading: () => say('stopped'),
});
elector.start();
say('started');
process.on('SIGTERM', async () => {
  await elector.release();
  say('released');
  process.exit(0);
});
