// The chart's pre-delete hook runs `kova-operator check-uninstall`: against a real API server
// of its own (the check counts Instances in every namespace, so no other suite's may exist), it
// passes before kova's CRDs exist (where check-install says so) and on a cluster without
// Instances, refuses, naming them and the order, while any exist, and says what to do when it
// cannot ask the API server.
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import { CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { loadKubeConfig } from '@kova/controller-kit';
import { API_VERSION, GROUP, PLURAL, VERSION } from '@kova/crds';
import { applyCrds, LocalControlPlane } from '@kova/hack';
import { execFile } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { checkInstall } from './install-check.js';

const mainJs = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'main.js');

let cp: LocalControlPlane;
let kc: KubeConfig;

beforeAll(async () => {
  cp = await LocalControlPlane.start({ controllerManager: false });
  kc = loadKubeConfig(cp.endpoints.kubeconfigPath);
}, 120_000);

afterAll(async () => {
  await cp?.stop();
});

/** `kova-operator check-uninstall` as the hook Job runs it: exit status and output. */
async function checkUninstall(
  kubeconfig = cp.endpoints.kubeconfigPath,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const run = promisify(execFile)(process.execPath, [mainJs, 'check-uninstall'], {
    env: {
      ...process.env,
      KUBECONFIG: kubeconfig,
      KOVA_RELEASE_NAME: 'vms',
      KOVA_SYSTEM_NAMESPACE: 'kova-system',
    },
  });
  try {
    return { code: 0, ...(await run) };
  } catch (err) {
    const { code, stdout, stderr } = err as { code: number; stdout: string; stderr: string };
    return { code, stdout, stderr };
  }
}

async function createInstances(namespace: string, count: number): Promise<void> {
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
  const api = kc.makeApiClient(CustomObjectsApi);
  for (let i = 0; i < count; i++)
    await api.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL.Instance,
      namespace,
      body: {
        apiVersion: API_VERSION,
        kind: 'Instance',
        metadata: { name: `vm-${i}` },
        spec: { flavor: 'm1.small', image: 'cirros', networks: [{ network: 'default' }] },
      },
    });
}

it('lets an uninstall go on when the Instance CRD is not installed', async () => {
  const { code, stdout } = await checkUninstall();
  expect(code).toBe(0);
  expect(stdout).toBe('nothing to guard: the Instance CRD is not installed\n');
});

// check-install (helm test) too, while this API server serves no kova CRD.
it('has check-install say that no kova CRD is installed', async () => {
  const result = await checkInstall(kc, { namespace: 'kova-system', timeoutMs: 0 });
  expect(result.ok).toBe(false);
  expect(result.message.split('\n')[0]).toBe(
    `${GROUP}/${VERSION} is not served: no kova CRD is installed`,
  );
});

it('says what to do when the API server refuses it (a bad token: 401)', async () => {
  const badToken = new KubeConfig();
  badToken.loadFromString(kc.exportConfig());
  for (const user of badToken.users) Object.assign(user, { token: 'not-a-token' });
  const path = join(tmpdir(), `kova-uninstall-check-bad-token-${process.pid}`);
  await writeFile(path, badToken.exportConfig(), { mode: 0o600 });
  try {
    const { code, stdout, stderr } = await checkUninstall(path);
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toBe(
      [
        'could not list Instances: Unauthorized: the API server refused the credentials (401)',
        "Fix the hook's access to the API server, or uninstall with --no-hooks to skip this check:",
        '  helm uninstall vms -n kova-system --no-hooks',
        '',
      ].join('\n'),
    );
  } finally {
    await rm(path, { force: true });
  }
});

it('lets an uninstall go on when no Instance exists', async () => {
  await applyCrds(cp.endpoints.kubeconfigPath);
  const { code, stdout } = await checkUninstall();
  expect(code).toBe(0);
  expect(stdout).toContain('no Instances exist');
});

it('refuses while Instances exist, naming the first few and the order to delete in', async () => {
  await createInstances('team-a', 4);
  await createInstances('team-b', 3);
  const { code, stderr } = await checkUninstall();
  expect(code).toBe(1);
  expect(stderr).toContain('refusing to uninstall kova: 7 Instance(s) exist');
  const named = stderr.match(/team-[ab]\/vm-\d/g) ?? [];
  expect(named).toHaveLength(5);
  expect(stderr).toContain(', ...)');
  const order = [
    'kubectl delete instances --all -A --wait',
    'kubectl delete networks --all --wait',
    'helm uninstall vms -n kova-system',
  ].map((step) => stderr.indexOf(step));
  expect(order.every((at) => at >= 0)).toBe(true);
  expect([...order].sort((a, b) => a - b)).toEqual(order);
  expect(stderr).toContain('helm uninstall vms -n kova-system --no-hooks');
});
