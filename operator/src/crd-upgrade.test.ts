// Helm installs a chart's crds/ once and never upgrades them; with crds.manage the operator
// applies the CRDs of its own release at start. Against a real API server: CRDs of an older
// release, created the way `helm install` creates them, are upgraded by the operator's start.
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import { ApiextensionsV1Api, type KubeConfig } from '@kubernetes/client-node';
import { Applier, loadKubeConfig } from '@kova/controller-kit';
import { API_VERSION, crdManifests, GROUP, PLURAL } from '@kova/crds';
import { kubectlPath, LocalControlPlane, until } from '@kova/hack';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const mainJs = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'main.js');
const HYPERVISORS = `${PLURAL.Hypervisor}.${GROUP}`;

let cp: LocalControlPlane;
let kc: KubeConfig;
let operator: ChildProcess | undefined;

type Schema = { properties: Record<string, Schema> };
type Crd = {
  metadata: { name: string };
  spec: { versions: { schema: { openAPIV3Schema: Schema } }[] };
};
const statusSchema = (crd: Crd) =>
  (crd.spec.versions[0]?.schema.openAPIV3Schema.properties.status as Schema).properties;

/** This release's CRDs, with Hypervisor's status.tunnelAddress missing as in an older one. */
async function olderRelease(): Promise<Crd[]> {
  const crds = (await crdManifests()) as unknown as Crd[];
  const hv = crds.find((c) => c.metadata.name === HYPERVISORS) as Crd;
  delete statusSchema(hv).tunnelAddress;
  return crds;
}

beforeAll(async () => {
  cp = await LocalControlPlane.start({ controllerManager: false });
  kc = loadKubeConfig(cp.endpoints.kubeconfigPath);
  // As `helm install` does: a plain create, by the field manager "helm".
  execFileSync(
    kubectlPath(),
    ['--kubeconfig', cp.endpoints.kubeconfigPath, 'create', '--field-manager=helm', '-f', '-'],
    { input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: await olderRelease() }) },
  );
}, 120_000);

afterAll(async () => {
  operator?.kill('SIGKILL');
  await cp?.stop();
});

async function hypervisorCrd(): Promise<Crd> {
  const api = kc.makeApiClient(ApiextensionsV1Api);
  return (await api.readCustomResourceDefinition({ name: HYPERVISORS })) as unknown as Crd;
}

it('upgrades CRDs a Helm install left behind when it starts, and the new field is served', async () => {
  expect(statusSchema(await hypervisorCrd()).tunnelAddress).toBeUndefined();

  operator = spawn(process.execPath, [mainJs], {
    env: {
      ...process.env,
      KUBECONFIG: cp.endpoints.kubeconfigPath,
      KOVA_MANAGE_CRDS: 'true',
      KOVA_HEALTH_PORT: '0',
      KOVA_LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  await until('the operator applied its CRDs', async () => {
    const crd = await hypervisorCrd();
    return statusSchema(crd).tunnelAddress !== undefined;
  });
  const managers = (
    (await hypervisorCrd()) as unknown as {
      metadata: { managedFields: { manager: string }[] };
    }
  ).metadata.managedFields.map((f) => f.manager);
  expect(managers).toContain('kova-operator');

  // Served: a status written with the new field is kept, not pruned.
  const applier = new Applier(kc, 'kova-crd-upgrade-test');
  const kind = { apiVersion: API_VERSION, kind: 'Hypervisor' };
  await applier.apply({ ...kind, metadata: { name: 'node-a' }, spec: {} }, PLURAL.Hypervisor);
  const hv = await applier.applyStatus<{ status?: { tunnelAddress?: string } }>(
    { ...kind, plural: PLURAL.Hypervisor, name: 'node-a' },
    { tunnelAddress: '192.0.2.10' },
  );
  expect(hv.status?.tunnelAddress).toBe('192.0.2.10');
  expect(operator.exitCode).toBeNull();
}, 120_000);
