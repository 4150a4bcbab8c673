// kova-node-agent: the DaemonSet process that runs this node's Instances as libvirt domains.
import { exitOnVersionFlag, HealthServer, loadKubeConfig, logger } from '@kova/controller-kit';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { NodeAgent } from './agent.js';
import { configFromEnv } from './config.js';

const log = logger('kova-node-agent');

// Every libvirt call runs on libuv's thread pool beside file I/O; with its default of 4 threads
// a few slow calls (a busy libvirtd) would stall the rest. Set before any asynchronous I/O.
process.env.UV_THREADPOOL_SIZE ??= '16';

async function main(): Promise<void> {
  exitOnVersionFlag('kova-node-agent', new URL('../package.json', import.meta.url));
  const config = configFromEnv();
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'kova_agent_' });
  const agent = new NodeAgent(
    loadKubeConfig(),
    config,
    log.with({ node: config.nodeName }),
    registry,
  );
  const health = new HealthServer({
    port: config.healthPort,
    host: config.healthAddress,
    registry,
    logger: log,
  });
  health.addLivenessCheck('event-loop', () => agent.isHealthy());
  health.addReadinessCheck('synced-and-heartbeat', () => agent.isReady());
  await health.start();
  await agent.start();
  log.info('started', {
    node: config.nodeName,
    libvirt: config.libvirtUri,
    stateDir: config.stateDir,
  });

  const shutdown = async (signal: string) => {
    log.info('shutting down; domains keep running', { signal });
    await agent.stop();
    await health.stop();
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
}

main().catch((err: Error) => {
  log.error('node agent failed to start', { error: err });
  process.exit(1);
});
