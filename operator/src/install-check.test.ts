// `helm test` runs `kova-operator check-install`: against the real API server of the jest run
// (kova's CRDs applied), it passes while an operator holds and renews the leader Lease, and
// fails, saying why, when no operator leads or when it cannot ask the API server.
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { LeaderElector, loadKubeConfig } from '@kova/controller-kit';
import { until } from '@kova/hack';
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { GROUP, VERSION } from '@kova/crds';
import { checkInstall, LEADER_LEASE } from './install-check.js';

const UNAUTHORIZED = 'Unauthorized: the API server refused the credentials (401)';

const mainJs = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'main.js');
const namespace = `kova-install-check-${process.pid}`;
let kc: KubeConfig;

beforeAll(async () => {
  kc = loadKubeConfig();
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
});

afterAll(async () => {
  await kc.makeApiClient(CoreV1Api).deleteNamespace({ name: namespace });
});

it('fails when no operator has ever led', async () => {
  const result = await checkInstall(kc, { namespace, timeoutMs: 0 });
  expect(result.ok).toBe(false);
  expect(result.message).toBe(
    `no operator leads: Lease ${namespace}/${LEADER_LEASE} does not exist`,
  );
});

it('says it could not ask, and why, when the API server refuses it (a bad token: 401)', async () => {
  const badToken = new KubeConfig();
  badToken.loadFromString(kc.exportConfig());
  for (const user of badToken.users) Object.assign(user, { token: 'not-a-token' });
  const result = await checkInstall(badToken, { namespace, timeoutMs: 0 });
  expect(result).toEqual({
    ok: false,
    message: [
      `could not discover ${GROUP}/${VERSION}: ${UNAUTHORIZED}`,
      `could not get Lease ${namespace}/${LEADER_LEASE}: ${UNAUTHORIZED}`,
    ].join('\n'),
  });
});

it('passes while an operator leads, and fails once it released the Lease', async () => {
  const elector = new LeaderElector(kc, {
    lease: LEADER_LEASE,
    namespace,
    identity: 'kova-operator-test',
    leaseDurationMs: 15_000,
    onStartedLeading: () => undefined,
  });
  elector.start();
  try {
    await until('the test elector leads', () => elector.isLeader());
    // As the helm test Pod runs it: the operator image's entrypoint with the subcommand.
    const { stdout } = await promisify(execFile)(process.execPath, [mainJs, 'check-install'], {
      env: { ...process.env, KOVA_SYSTEM_NAMESPACE: namespace, KOVA_CHECK_TIMEOUT_SECONDS: '0' },
    });
    expect(stdout).toContain('kova is installed: 8 kinds served, an operator leads');
  } finally {
    await elector.release();
  }
  const result = await checkInstall(kc, { namespace, timeoutMs: 0 });
  expect(result).toEqual({
    ok: false,
    message: `no operator leads: Lease ${namespace}/${LEADER_LEASE} has no holder`,
  });
});
