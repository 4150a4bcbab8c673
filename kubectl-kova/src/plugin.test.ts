// The built plugin run as a user runs it, against the jest run's real API server with kova's
// CRDs and its kova-action-requester admission policy, as a ServiceAccount with only the rights
// the plugin needs. kova's operator and node agent do not run here: the test writes each
// action's status in their place.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import {
  AdmissionregistrationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  RbacAuthorizationV1Api,
  type KubeConfig,
} from '@kubernetes/client-node';
import { loadKubeConfig } from '@kova/controller-kit';
import { GROUP, PLURAL, VERSION, type InstanceActionObject } from '@kova/crds';
import { applyPolicies, kubectlPath, until } from '@kova/hack';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';

const pluginDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const mainJs = join(pluginDir, 'dist', 'main.js');
const ns = `kubectl-kova-${Math.random().toString(36).slice(2, 7)}`;
const user = `system:serviceaccount:${ns}:operator-on-call`;

let admin: KubeConfig;
let api: CustomObjectsApi;
let dir: string;
let kubeconfig: string;
let policyWasThere: boolean;
const children = new Set<ChildProcess>();

interface Running {
  exit: Promise<number | null>;
  stdout: () => string;
  stderr: () => string;
}

/** The plugin as a child process, with the ServiceAccount's kubeconfig. */
function start(args: string[]): Running {
  const child = spawn(process.execPath, [mainJs, ...args, '--kubeconfig', kubeconfig]);
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exit = new Promise<number | null>((r) =>
    child.on('close', (code) => (children.delete(child), r(code))),
  );
  return { exit, stdout: () => stdout, stderr: () => stderr };
}

async function run(args: string[]) {
  const p = start(args);
  const code = await p.exit;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

const actions = { group: GROUP, version: VERSION, namespace: ns, plural: PLURAL.InstanceAction };

async function actionsOf(instance: string): Promise<InstanceActionObject[]> {
  const list = (await api.listNamespacedCustomObject({
    ...actions,
    fieldSelector: `spec.instance=${instance}`,
  })) as { items: InstanceActionObject[] };
  return list.items;
}

/** The one action the plugin created for `instance`, once it exists. */
const createdFor = (instance: string) =>
  until(`an action for ${instance}`, async () => (await actionsOf(instance))[0]);

/** Writes the status as kova's operator and node agent would, through the status subresource. */
async function setStatus(name: string, status: InstanceActionObject['status']): Promise<void> {
  const current = (await api.getNamespacedCustomObject({ ...actions, name })) as object;
  await api.replaceNamespacedCustomObjectStatus({ ...actions, name, body: { ...current, status } });
}

async function createInstance(name: string): Promise<void> {
  await api.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: ns,
    plural: PLURAL.Instance,
    body: {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: 'Instance',
      metadata: { name },
      spec: { flavor: 'm1.small', image: 'ubuntu-24.04', networks: [{ network: 'default' }] },
    },
  });
}

/**
 * A ServiceAccount that may read Instances and create and follow InstanceActions, and a
 * kubeconfig for it whose context names the namespace, as a user's would.
 */
async function serviceAccountKubeconfig(): Promise<string> {
  const core = admin.makeApiClient(CoreV1Api);
  const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
  const name = 'operator-on-call';
  await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name } } });
  await rbac.createNamespacedRole({
    namespace: ns,
    body: {
      metadata: { name },
      rules: [
        { apiGroups: [GROUP], resources: ['instances'], verbs: ['get'] },
        {
          apiGroups: [GROUP],
          resources: ['instanceactions'],
          verbs: ['create', 'get', 'list', 'watch'],
        },
      ],
    },
  });
  await rbac.createNamespacedRoleBinding({
    namespace: ns,
    body: {
      metadata: { name },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
      subjects: [{ kind: 'ServiceAccount', name, namespace: ns }],
    },
  });
  const { status } = await core.createNamespacedServiceAccountToken({
    name,
    namespace: ns,
    body: { spec: { audiences: [], expirationSeconds: 3600 } },
  });
  const cluster = admin.getCurrentCluster();
  if (!cluster || !status?.token) throw new Error('no cluster or token for the test kubeconfig');
  const path = join(dir, 'kubeconfig');
  const ca = cluster.caData
    ? { 'certificate-authority-data': cluster.caData }
    : { 'certificate-authority': cluster.caFile };
  await writeFile(
    path,
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      'current-context': 'on-call',
      clusters: [{ name: 'kova', cluster: { server: cluster.server, ...ca } }],
      users: [{ name, user: { token: status.token } }],
      contexts: [{ name: 'on-call', context: { cluster: 'kova', user: name, namespace: ns } }],
    }),
    { mode: 0o600 },
  );
  return path;
}

const POLICY = 'kova-action-requester';

/**
 * Applies kova's admission policies (a cluster-wide change, undone after the suite unless they
 * were there before) and waits until a new policy is enforced, which takes a moment.
 */
async function enforceRequesterPolicy(): Promise<void> {
  const admission = admin.makeApiClient(AdmissionregistrationV1Api);
  policyWasThere = await admission.readValidatingAdmissionPolicy({ name: POLICY }).then(
    () => true,
    () => false,
  );
  await applyPolicies();
  const impostor = () =>
    api.createNamespacedCustomObject({
      ...actions,
      dryRun: 'All',
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'InstanceAction',
        metadata: { generateName: 'impostor-' },
        spec: { instance: 'web-1', action: 'Start', requestedBy: 'mallory' },
      },
    });
  await until('kova-action-requester to refuse requestedBy: mallory', () =>
    impostor().then(
      () => false,
      () => true,
    ),
  );
}

beforeAll(async () => {
  admin = loadKubeConfig();
  api = admin.makeApiClient(CustomObjectsApi);
  dir = await mkdtemp(join(tmpdir(), 'kubectl-kova-'));
  await admin.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: ns } } });
  kubeconfig = await serviceAccountKubeconfig();
  for (const name of ['web-1', 'ok-1', 'fail-1', 'slow-1']) await createInstance(name);
  await enforceRequesterPolicy();
});

afterEach(() => {
  // A test that failed half-way must not leave a waiting plugin behind.
  for (const child of children) child.kill();
});

afterAll(async () => {
  if (!policyWasThere) {
    const admission = admin.makeApiClient(AdmissionregistrationV1Api);
    await admission.deleteValidatingAdmissionPolicyBinding({ name: POLICY });
    await admission.deleteValidatingAdmissionPolicy({ name: POLICY });
  }
  await admin.makeApiClient(CoreV1Api).deleteNamespace({ name: ns });
  await rm(dir, { recursive: true, force: true });
});

describe('kubectl kova against a real API server', () => {
  it('--no-wait creates the action, requested by the user the API server sees, and returns', async () => {
    const started = await run(['start', 'web-1', '--no-wait']);
    expect(started).toMatchObject({ code: 0, stderr: '' });
    expect(started.stdout).toMatch(
      /^instanceaction\.compute\.kova\.dev\/web-1-start-\w{5} created\n$/,
    );
    const [action] = await actionsOf('web-1');
    expect(started.stdout).toContain(`/${action?.metadata.name} created`);
    expect(action?.spec).toEqual({ instance: 'web-1', action: 'Start', requestedBy: user });

    const restarted = await run(['restart', 'web-1', '--hard', '--no-wait', '-o', 'json']);
    expect(restarted.code).toBe(0);
    const printed = JSON.parse(restarted.stdout) as InstanceActionObject;
    expect(printed.metadata.name).toMatch(/^web-1-restart-\w{5}$/);
    expect(printed.spec).toEqual({
      instance: 'web-1',
      action: 'Reboot',
      hard: true,
      requestedBy: user,
    });
  });

  it('waits, printing each phase and step, and says the Instance restarted when it Succeeded', async () => {
    const plugin = start(['restart', 'ok-1']);
    const name = (await createdFor('ok-1')).metadata.name;
    const ref = `instanceaction/${name}`;
    const printed = (line: string) =>
      until(`"${line}" on stderr`, () => plugin.stderr().includes(`${line}\n`), 10_000);

    await setStatus(name, { phase: 'Accepted', nodeName: 'hv-1' });
    await printed(`${ref}: Accepted`);
    const shutdown = { name: 'Shutdown', phase: 'Running' as const, startTime: now() };
    await setStatus(name, { phase: 'Running', startTime: now(), steps: [shutdown] });
    await printed(`${ref}: Running: Shutdown`);
    const done = { ...shutdown, phase: 'Succeeded' as const, completionTime: now() };
    await setStatus(name, {
      phase: 'Running',
      startTime: now(),
      steps: [done, { name: 'PowerOn', phase: 'Running', startTime: now() }],
    });
    await printed(`${ref}: Running: PowerOn`);
    await setStatus(name, { phase: 'Succeeded', reason: 'Succeeded', completionTime: now() });

    expect(await plugin.exit).toBe(0);
    expect(plugin.stdout()).toBe('instance/ok-1 restarted\n');
    expect(plugin.stderr()).toBe(
      [`${ref}: Accepted`, `${ref}: Running: Shutdown`, `${ref}: Running: PowerOn`, ''].join('\n'),
    );
  });

  it('exits 1 with the reason and message when the action Failed', async () => {
    const plugin = start(['pause', 'fail-1']);
    const name = (await createdFor('fail-1')).metadata.name;
    const message = 'Instance fail-1 is Shutdown; Pause needs it Running';
    await setStatus(name, { phase: 'Failed', reason: 'InvalidState', message });

    expect(await plugin.exit).toBe(1);
    expect(plugin.stdout()).toBe('');
    expect(plugin.stderr()).toBe(`error: InvalidState: ${message}\n`);
  });

  it("lists an Instance's actions oldest first, as a table or a List", async () => {
    const table = await run(['actions', 'web-1']);
    expect(table).toMatchObject({ code: 0, stderr: '' });
    const [header, ...rows] = table.stdout.trimEnd().split('\n');
    expect(header?.split(/\s+/)).toEqual([
      'NAME',
      'ACTION',
      'PHASE',
      'REASON',
      'USER',
      'STARTED',
      'DURATION',
      'AGE',
    ]);
    // Oldest first; creationTimestamp has whole seconds, so within one second by name.
    const stored = (await actionsOf('web-1')).map((a) => ({
      key: `${a.metadata.creationTimestamp} ${a.metadata.name}`,
      row: [a.metadata.name, a.spec.hard ? 'Reboot(hard)' : a.spec.action],
    }));
    expect(stored.map((a) => a.row).sort()).toEqual([
      [expect.stringMatching(/^web-1-restart-/), 'Reboot(hard)'],
      [expect.stringMatching(/^web-1-start-/), 'Start'],
    ]);
    stored.sort((a, b) => a.key.localeCompare(b.key));
    expect(rows.map((r) => r.split(/\s+/).slice(0, 5))).toEqual(
      stored.map((a) => [...a.row, '<none>', '<none>', user]),
    );

    const list = JSON.parse((await run(['actions', 'ok-1', '-o', 'json'])).stdout) as {
      kind: string;
      items: InstanceActionObject[];
    };
    expect(list.kind).toBe('List');
    expect(list.items.map((a) => [a.spec.instance, a.spec.action, a.status?.phase])).toEqual([
      ['ok-1', 'Reboot', 'Succeeded'],
    ]);

    // -n overrides the context's namespace; the ServiceAccount may not list there, and the
    // server's refusal is printed as kubectl prints it.
    expect(await run(['actions', 'web-1', '-n', 'default'])).toEqual({
      code: 1,
      stdout: '',
      stderr:
        'Error from server (Forbidden): instanceactions.compute.kova.dev is forbidden: ' +
        `User "${user}" cannot list resource "instanceactions" in API group "compute.kova.dev" ` +
        'in the namespace "default"\n',
    });
    expect(await run(['actions', 'web-1', '--context', 'nope'])).toEqual({
      code: 1,
      stdout: '',
      stderr: 'error: context "nope" does not exist\n',
    });
  });

  it('refuses a missing Instance as kubectl would, before creating anything', async () => {
    expect(await run(['stop', 'nope'])).toEqual({
      code: 1,
      stdout: '',
      stderr: 'Error from server (NotFound): instances.compute.kova.dev "nope" not found\n',
    });
    expect(await actionsOf('nope')).toEqual([]);
  });

  it('gives up after --timeout, naming the action, when nobody answers', async () => {
    const began = Date.now();
    const result = await run(['stop', 'slow-1', '--timeout', '2s']);
    const [action] = await actionsOf('slow-1');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(
      `error: timed out after 2s waiting for instanceaction/${action?.metadata.name} to finish`,
    );
    expect(Date.now() - began).toBeGreaterThanOrEqual(2000);
    expect(Date.now() - began).toBeLessThan(15_000);
  });

  it('runs as `kubectl kova` from the shim on PATH', async () => {
    const result = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
      const child = spawn(kubectlPath(), ['kova', 'actions', 'ok-1', '--kubeconfig', kubeconfig], {
        env: { ...process.env, PATH: `${join(pluginDir, 'bin')}:${process.env.PATH}` },
      });
      let stdout = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.on('close', (code) => resolve({ code, stdout }));
    });
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^NAME +ACTION .*\nok-1-restart-\w{5} +Reboot +Succeeded /);
  });
});

const now = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');
