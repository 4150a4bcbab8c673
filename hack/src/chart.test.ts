// The Helm chart: lints, renders with default and non-default values, its CRDs are exactly
// crds/, and the API server accepts the rendered objects in a server-side dry run.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { kubectlPath } from './control-plane.js';
import { until } from './until.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const chart = join(root, 'charts', 'kova');
const helm = (...args: string[]) =>
  execFileSync(join(dirname(kubectlPath()), 'helm'), args, { encoding: 'utf8', stdio: 'pipe' });
const kubectl = (args: string[], input?: string) =>
  execFileSync(kubectlPath(), args, { encoding: 'utf8', stdio: 'pipe', input });
/** The API server's version: a helm built from source renders for v1.20 unless told. */
let serverVersion = '';
const template = (...args: string[]) =>
  helm('template', 'kova', chart, '--kube-version', serverVersion, ...args);
const kinds = (yaml: string) =>
  parseAllDocuments(yaml)
    .map((d) => d.toJS() as { kind: string; metadata: { name: string } })
    .filter(Boolean);
const custom = join(tmpdir(), `kova-values-${process.pid}.yaml`);
/** Test users bound cluster-wide to a built-in or kova role. */
const USERS = { viewer: 'view', editor: 'edit', 'kova-viewer': 'kova-view' } as const;
const userName = (u: string) => `kova-chart-test-${u}`;

/** `kubectl auth can-i` as the API server judges it: "yes" or "no". */
function can(as: string, verb: string, resource: string): string {
  const [res, sub] = resource.split('/');
  const args = ['auth', 'can-i', '-n', 'kova-chart-test', `--as=${as}`, verb, res as string];
  if (sub) args.push(`--subresource=${sub}`);
  try {
    return kubectl(args).trim();
  } catch (err) {
    return String((err as { stdout?: string }).stdout ?? '').trim();
  }
}

beforeAll(() => {
  writeFileSync(
    custom,
    [
      'image: { registry: registry.example.com/kova, tag: "9.9.9", pullPolicy: Always }',
      'operator: { replicas: 3, allocationRatios: { cpu: 16, ram: 1.5, disk: 2 } }',
      'agent: { nodeSelector: { role: hypervisor }, virtType: qemu }',
      'metrics: { serviceMonitor: { enabled: true } }',
      'podDisruptionBudget: { enabled: false }',
    ].join('\n'),
  );
  kubectl(['create', 'namespace', 'kova-chart-test']);
  const version = JSON.parse(kubectl(['version', '-o', 'json'])) as {
    serverVersion: { gitVersion: string };
  };
  serverVersion = version.serverVersion.gitVersion;
});

afterAll(() => {
  rmSync(custom, { force: true });
  for (const u of Object.keys(USERS))
    kubectl(['delete', 'clusterrolebinding', userName(u), '--ignore-not-found']);
  kubectl(['delete', 'namespace', 'kova-chart-test', '--wait=false']);
});

describe('Helm chart', () => {
  it('passes helm lint', () => {
    expect(helm('lint', chart)).toContain('0 chart(s) failed');
  });

  it('ships CRDs identical to crds/', () => {
    const ours = readdirSync(join(root, 'crds'))
      .filter((f) => f.endsWith('.yaml'))
      .sort();
    expect(readdirSync(join(chart, 'crds')).sort()).toEqual(ours);
    for (const f of ours)
      expect(readFileSync(join(chart, 'crds', f), 'utf8')).toBe(
        readFileSync(join(root, 'crds', f), 'utf8'),
      );
  });

  it('renders the operator, the agent, their least-privilege RBAC and the aggregated user roles by default', () => {
    const objs = kinds(template('-n', 'kova-chart-test'));
    const names = objs.map((o) => `${o.kind}/${o.metadata.name}`);
    for (const n of [
      'Deployment/kova-operator',
      'DaemonSet/kova-node-agent',
      'ServiceAccount/kova-operator',
      'ServiceAccount/kova-node-agent',
      'ClusterRole/kova-operator',
      'ClusterRole/kova-node-agent',
      'ClusterRole/kova-edit',
      'ClusterRole/kova-view',
      'ClusterRole/kova-catalog-view',
      'PodDisruptionBudget/kova-operator',
      'Service/kova-operator-metrics',
      'ValidatingAdmissionPolicy/kova-node-isolation',
      'ValidatingAdmissionPolicyBinding/kova-node-isolation',
    ]) {
      expect(names).toContain(n);
    }
    expect(names.some((n) => n.startsWith('ServiceMonitor/'))).toBe(false);
    const deploy = objs.find((o) => o.kind === 'Deployment') as unknown as {
      spec: { replicas: number };
    };
    expect(deploy.spec.replicas).toBe(2);
  });

  it('honours non-default values', () => {
    const out = template('-n', 'kova-chart-test', '-f', custom);
    expect(out).toContain('image: registry.example.com/kova/kova-operator:9.9.9');
    expect(out).toContain('replicas: 3');
    expect(out).toMatch(/name: KOVA_CPU_ALLOCATION_RATIO, value: "16"/);
    expect(out).toContain('role: hypervisor');
    expect(out).toContain('kind: ServiceMonitor');
    expect(out).not.toContain('kind: PodDisruptionBudget');
  });

  it('rejects values the schema forbids', () => {
    expect(() => template('--set', 'agent.virtType=xen')).toThrow(/virtType/);
  });

  it('refuses Kubernetes older than 1.31 (selectableFields, CEL IP/CIDR functions)', () => {
    expect(() => helm('template', 'kova', chart, '--kube-version', 'v1.30.9')).toThrow(
      /requires kubeVersion: >=1.31/,
    );
  });

  it('lets the operator apply only its own CRDs, and only with crds.manage', () => {
    const operatorRole = (yaml: string) =>
      kinds(yaml).find((o) => o.kind === 'ClusterRole' && o.metadata.name === 'kova-operator') as
        { rules: { resources: string[]; resourceNames?: string[]; verbs: string[] }[] } | undefined;
    const crdRules = (yaml: string) =>
      operatorRole(yaml)?.rules.filter((r) => r.resources.includes('customresourcedefinitions'));
    const managed = crdRules(template());
    const names = readdirSync(join(root, 'crds'))
      .filter((f) => f.endsWith('.yaml'))
      .map((f) => kinds(readFileSync(join(root, 'crds', f), 'utf8'))[0]?.metadata.name)
      .sort();
    expect(managed?.find((r) => r.verbs.includes('patch'))?.resourceNames?.sort()).toEqual(names);
    expect(template()).toMatch(/name: KOVA_MANAGE_CRDS, value: "true"/);
    expect(crdRules(template('--set', 'crds.manage=false'))).toEqual([]);
  });

  it('is accepted by the real API server in a server-side dry run', () => {
    const out = kubectl(
      ['apply', '--dry-run=server', '-n', 'kova-chart-test', '-f', '-'],
      template('-n', 'kova-chart-test'),
    );
    expect(out).toContain('deployment.apps/kova-operator created (server dry run)');
    expect(out).toContain('daemonset.apps/kova-node-agent created (server dry run)');
  });

  it('gives each component only what it needs, as the real API server judges it (kubectl auth can-i)', () => {
    const rendered = kinds(template('-n', 'kova-chart-test'));
    const rbac = rendered.filter((o) =>
      ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding'].includes(
        o.kind,
      ),
    );
    kubectl(
      ['apply', '-n', 'kova-chart-test', '-f', '-'],
      JSON.stringify({ apiVersion: 'v1', kind: 'List', items: rbac }),
    );
    const sa = (name: string) => `system:serviceaccount:kova-chart-test:${name}`;
    const agent = (verb: string, resource: string) => can(sa('kova-node-agent'), verb, resource);
    const operator = (verb: string, resource: string) => can(sa('kova-operator'), verb, resource);
    const denied = (pairs: [string, string][]) => pairs;
    for (const [verb, resource] of denied([
      ['create', 'flavors.compute.kova.dev'],
      ['patch', 'images.compute.kova.dev'],
      ['update', 'networks.compute.kova.dev'],
      ['get', 'secrets'],
      ['create', 'ipallocations.compute.kova.dev'],
    ])) {
      expect(`${verb} ${resource}: ${agent(verb, resource)}`).toBe(`${verb} ${resource}: no`);
    }
    expect(agent('patch', 'instances.compute.kova.dev/status')).toBe('yes');
    expect(agent('patch', 'hypervisors.compute.kova.dev/status')).toBe('yes');
    for (const [verb, resource] of denied([
      ['get', 'secrets'],
      ['create', 'pods/exec'],
      ['create', 'flavors.compute.kova.dev'],
      ['delete', 'hypervisors.compute.kova.dev'],
    ])) {
      expect(`${verb} ${resource}: ${operator(verb, resource)}`).toBe(`${verb} ${resource}: no`);
    }
    expect(operator('create', 'ipallocations.compute.kova.dev')).toBe('yes');
    expect(operator('patch', 'networks.compute.kova.dev')).toBe('yes');
    expect(operator('patch', 'networks.compute.kova.dev/status')).toBe('yes');
    expect(operator('create', 'events')).toBe('yes');
    expect(operator('patch', 'instances.compute.kova.dev/status')).toBe('yes');
    expect(operator('update', 'leases.coordination.k8s.io')).toBe('yes');
  });

  it('#12.14 keeps userData from the built-in view role: viewers read the catalogue, not Instances; edit and kova-view read them', async () => {
    const roles = kinds(template('-n', 'kova-chart-test')).filter((o) => o.kind === 'ClusterRole');
    const bindings = Object.entries(USERS).map(([u, role]) => ({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: userName(u) },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: userName(u) }],
    }));
    kubectl(
      ['apply', '-f', '-'],
      JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [...roles, ...bindings] }),
    );
    const as = (u: keyof typeof USERS, verb: string, resource: string) =>
      can(userName(u), verb, resource);
    // kube-controller-manager aggregates kova's roles into the built-in ones.
    await until(
      'kova roles aggregated into view and edit',
      () =>
        as('viewer', 'list', 'flavors.compute.kova.dev') === 'yes' &&
        as('editor', 'get', 'instances.compute.kova.dev') === 'yes',
    );
    for (const verb of ['get', 'list', 'watch'])
      expect(`view: ${verb} instances ${as('viewer', verb, 'instances.compute.kova.dev')}`).toBe(
        `view: ${verb} instances no`,
      );
    for (const resource of ['images', 'networks', 'servergroups'])
      expect(as('viewer', 'list', `${resource}.compute.kova.dev`)).toBe('yes');
    expect(as('kova-viewer', 'get', 'instances.compute.kova.dev')).toBe('yes');
    expect(as('editor', 'list', 'instances.compute.kova.dev/status')).toBe('yes');
  });
});
