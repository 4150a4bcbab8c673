// kova-operator: leader-elected scheduler, address allocator, Instance phase machine and
// Network lifecycle (conflicts, VNIs, usage, deletion).
import {
  apiMessage,
  ensureCrds,
  envNumber,
  exitOnVersionFlag,
  HealthServer,
  LeaderElector,
  loadKubeConfig,
  logger,
} from '@kova/controller-kit';
import { crdManifests } from '@kova/crds';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { configFromEnv } from './config.js';
import { checkInstall, LEADER_LEASE } from './install-check.js';
import { Operator } from './operator.js';
import { checkUninstall, type CheckResult } from './uninstall-check.js';

const log = logger('kova-operator');

async function main(): Promise<void> {
  const config = configFromEnv();
  const kc = loadKubeConfig();
  if (config.manageCrds) {
    // Before any informer: they must list with the schemas this release expects.
    await ensureCrds(kc, await crdManifests(), { fieldManager: 'kova-operator', force: true });
    log.info('CRDs applied', { fieldManager: 'kova-operator' });
  }
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'kova_operator_' });
  const controller = new Operator(kc, config, log, registry);
  const health = new HealthServer({ port: config.healthPort, registry, logger: log });
  health.addReadinessCheck(
    'informers-synced',
    () => controller.state.hasSynced() || 'informers have not listed yet',
  );
  await health.start();
  await controller.startInformers();

  const elector = new LeaderElector(kc, {
    lease: LEADER_LEASE,
    namespace: config.systemNamespace,
    identity: config.identity,
    logger: log,
    registry,
    // client-go's proportions: renew within 2/3 of the lease, retry every 2/15 of it.
    leaseDurationMs: config.leaderLeaseMs,
    renewDeadlineMs: (config.leaderLeaseMs * 2) / 3,
    retryPeriodMs: (config.leaderLeaseMs * 2) / 15,
    onStartedLeading: (signal) => controller.lead(signal),
    // A sync hung on the API server outlived its term: restart rather than overlap the next.
    onTermStuck: () => process.exit(1),
  });
  // A leader whose term is not being worked schedules nothing: restart it.
  health.addLivenessCheck(
    'leader-reconciling',
    () => !elector.isLeader() || controller.reconciling || 'leading, but not reconciling',
  );
  elector.start();
  log.info('started', { identity: config.identity, healthPort: config.healthPort });

  const shutdown = async (signal: string) => {
    log.info('shutting down', { signal });
    await elector.release();
    await controller.stop();
    await health.stop();
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
}

/** The chart's hooks run the operator image with one of these as its argument. */
const CHECKS: Record<string, () => Promise<CheckResult>> = {
  // pre-delete: fails while Instances exist.
  'check-uninstall': () =>
    checkUninstall(loadKubeConfig(), {
      release: process.env.KOVA_RELEASE_NAME ?? 'kova',
      namespace: configFromEnv().systemNamespace,
    }),
  // helm test
  'check-install': () =>
    checkInstall(loadKubeConfig(), {
      namespace: configFromEnv().systemNamespace,
      timeoutMs: envNumber('KOVA_CHECK_TIMEOUT_SECONDS', 60) * 1000,
    }),
};

async function check(name: string): Promise<void> {
  const run = CHECKS[name];
  if (!run) {
    process.stderr.write(`unknown command ${name}; commands: ${Object.keys(CHECKS).join(', ')}\n`);
    process.exit(2);
  }
  // What a check could not even ask (no kubeconfig, say) is said in words too: Helm prints this
  // output to whoever runs the hook, not to a log reader.
  let result: CheckResult;
  try {
    result = await run();
  } catch (err) {
    result = { ok: false, message: `${name} failed: ${apiMessage(err)}` };
  }
  (result.ok ? process.stdout : process.stderr).write(`${result.message}\n`);
  process.exit(result.ok ? 0 : 1);
}

exitOnVersionFlag('kova-operator', new URL('../package.json', import.meta.url));
const command = process.argv[2];
(command ? check(command) : main()).catch((err: Error) => {
  log.error(command ? `${command} failed` : 'operator failed to start', { error: err });
  process.exit(1);
});
