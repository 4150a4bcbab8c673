// The boot scenario (boot.ts) on the local stack, or on any cluster given KOVA_E2E_KUBECONFIG
// (cluster.ts).
import { afterAll, beforeAll } from '@jest/globals';
import { boot } from './boot.js';
import { startCluster, type Cluster } from './cluster.js';

let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster({
    suite: 'boot',
    agentEnv: { KOVA_SHUTDOWN_TIMEOUT_SECONDS: '3', KOVA_RESYNC_SECONDS: '5' },
  });
}, 300_000);

afterAll(async () => {
  await cluster?.stop();
});

boot(() => cluster);
