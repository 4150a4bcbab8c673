// The Helm chart: lints, renders with default and non-default values, its CRDs are exactly
// crds/, and the API server accepts the rendered objects in a server-side dry run.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
      'ClusterRole/kova-admin',
      'PodDisruptionBudget/kova-operator',
      'Service/kova-operator-metrics',
      'ValidatingAdmissionPolicy/kova-node-isolation',
      'ValidatingAdmissionPolicyBinding/kova-node-isolation',
      'ValidatingAdmissionPolicy/kova-action-requester',
      'ValidatingAdmissionPolicyBinding/kova-action-requester',
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

  it('is accepted by the real API server in a server-side dry run, the uninstall guard too', () => {
    // The helm test Pod is dry-run with its ServiceAccount in place, by the Pod Security test.
    const out = kubectl(
      ['apply', '--dry-run=server', '-n', 'kova-chart-test', '-f', '-'],
      template('-n', 'kova-chart-test', '--skip-tests'),
    );
    expect(out).toContain('deployment.apps/kova-operator created (server dry run)');
    expect(out).toContain('daemonset.apps/kova-node-agent created (server dry run)');
    expect(out).toContain('job.batch/kova-uninstall-check created (server dry run)');
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
      ['update', 'ipblocks.compute.kova.dev'],
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
    expect(operator('update', 'ipblocks.compute.kova.dev')).toBe('yes');
    expect(operator('create', 'ipallocations.compute.kova.dev')).toBe('no');
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

interface Container {
  image: string;
  args?: string[];
  env?: { name: string; value?: string; valueFrom?: object }[];
  ports?: { name: string; containerPort: number }[];
  readinessProbe?: { httpGet: { host?: string; port: string } };
  livenessProbe?: { httpGet: { host?: string; port: string } };
  securityContext?: Record<string, unknown>;
}
interface PodSpec {
  serviceAccountName?: string;
  nodeSelector?: Record<string, string>;
  tolerations?: Record<string, unknown>[];
  affinity?: Record<string, unknown>;
  priorityClassName?: string;
  imagePullSecrets?: { name: string }[];
  terminationGracePeriodSeconds?: number;
  securityContext?: Record<string, unknown>;
  containers: Container[];
}
interface PodTemplate {
  metadata: { labels: Record<string, string>; annotations?: Record<string, string> };
  spec: PodSpec;
}
interface Rendered {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec: PodSpec & {
    template: PodTemplate;
    updateStrategy?: unknown;
    backoffLimit?: number;
    activeDeadlineSeconds?: number;
    ports?: { name: string; port: number }[];
    namespaceSelector?: { matchNames: string[] };
    endpoints?: { port: string }[];
  };
}

const rendered = (...args: string[]) =>
  kinds(template('-n', 'kova-chart-test', ...args)) as unknown as Rendered[];

/**
 * Renders a copy of the chart whose values.yaml is `values`, also given as -f: what
 * `helm upgrade --reuse-values` renders, the previous release's values standing in for the
 * chart's values.yaml and its user-supplied ones on top.
 */
function renderWithChartValues(values: string, ...args: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'kova-chart-'));
  try {
    cpSync(chart, join(dir, 'kova'), { recursive: true });
    const file = join(dir, 'kova', 'values.yaml');
    writeFileSync(file, values);
    return helm(
      'template',
      'kova',
      join(dir, 'kova'),
      '--kube-version',
      serverVersion,
      '-n',
      'kova-chart-test',
      '-f',
      file,
      ...args,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
/**
 * A hook's objects, all named `name`: its workload and, created before it (lower weight), its
 * ServiceAccount and RBAC; all replaced by a next run and deleted once they succeed.
 */
function hookObjects(
  objs: Rendered[],
  name: string,
  hook: string,
  workload: string,
  rbac: string[],
): Rendered[] {
  const hooks = objs.filter((o) => o.metadata.name === name);
  expect(hooks.map((o) => o.kind).sort()).toEqual([...rbac, workload, 'ServiceAccount'].sort());
  const weight = (o: Rendered) => Number(o.metadata.annotations?.['helm.sh/hook-weight']);
  const runs = get(objs, workload, name);
  for (const o of hooks) {
    expect(o.metadata.annotations?.['helm.sh/hook']).toBe(hook);
    expect(o.metadata.annotations?.['helm.sh/hook-delete-policy']).toBe(
      'before-hook-creation,hook-succeeded',
    );
    if (o !== runs) expect(weight(o)).toBeLessThan(weight(runs));
  }
  return hooks;
}

function get(objs: Rendered[], kind: string, name: string): Rendered {
  const found = objs.find((o) => o.kind === kind && o.metadata.name === name);
  if (!found) throw new Error(`${kind}/${name} is not rendered`);
  return found;
}
const agentPod = (objs: Rendered[]) => get(objs, 'DaemonSet', 'kova-node-agent').spec.template;
const operatorPod = (objs: Rendered[]) => get(objs, 'Deployment', 'kova-operator').spec.template;
const container = (pod: { spec: PodSpec }) => pod.spec.containers[0] as Container;
const env = (c: Container, name: string) => c.env?.find((e) => e.name === name)?.value;

/** kubectl's exit status, standard output and standard error (warnings, refusals). */
function run(args: string[], input?: string) {
  const r = spawnSync(kubectlPath(), args, { encoding: 'utf8', input });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const POD_SECURITY = ['restricted', 'baseline', 'privileged'] as const;
const psaNamespace = (level: string) => `kova-chart-psa-${level}`;

describe('Helm chart: scheduling, ports, Pod Security and lifecycle hooks (#14)', () => {
  beforeAll(() => {
    const namespaces = POD_SECURITY.map((level) => ({
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: {
        name: psaNamespace(level),
        labels: { 'pod-security.kubernetes.io/enforce': level },
      },
    }));
    kubectl(
      ['apply', '-f', '-'],
      JSON.stringify({ apiVersion: 'v1', kind: 'List', items: namespaces }),
    );
    for (const level of POD_SECURITY)
      for (const sa of [
        'kova-node-agent',
        'kova-operator',
        'kova-uninstall-check',
        'kova-check-install',
      ])
        kubectl(['create', 'serviceaccount', sa, '-n', psaNamespace(level)]);
  });

  afterAll(() => {
    for (const level of POD_SECURITY)
      kubectl(['delete', 'namespace', psaNamespace(level), '--wait=false']);
    for (const kind of ['clusterrolebinding', 'clusterrole'])
      kubectl(['delete', kind, 'kova-uninstall-check', '--ignore-not-found']);
  });

  it('places the agent on every labelled node, tainted or not, as node-critical', () => {
    const objs = rendered();
    const pod = agentPod(objs);
    expect(pod.spec.tolerations).toEqual([{ operator: 'Exists' }]);
    expect(pod.spec.priorityClassName).toBe('system-node-critical');
    expect(pod.spec.terminationGracePeriodSeconds).toBe(60);
    expect(get(objs, 'DaemonSet', 'kova-node-agent').spec.updateStrategy).toEqual({
      type: 'RollingUpdate',
      rollingUpdate: { maxUnavailable: 1 },
    });
    const operator = operatorPod(objs).spec;
    for (const unset of ['nodeSelector', 'tolerations', 'affinity', 'priorityClassName'] as const)
      expect(operator[unset]).toBeUndefined();
    expect(operator.imagePullSecrets).toBeUndefined();
  });

  it('takes tolerations, affinity, nodeSelector, priority, pod labels and annotations, update strategy, pull secrets and digests from values', () => {
    const digest = (c: string) => `sha256:${c.repeat(64)}`;
    const affinity = {
      nodeAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: {
          nodeSelectorTerms: [
            { matchExpressions: [{ key: 'zone', operator: 'In', values: ['a'] }] },
          ],
        },
      },
    };
    const values = join(tmpdir(), `kova-values-placement-${process.pid}.yaml`);
    writeFileSync(
      values,
      JSON.stringify({
        imagePullSecrets: [{ name: 'regcred' }],
        operator: {
          image: { digest: digest('a') },
          nodeSelector: { 'node-role.kubernetes.io/control-plane': '' },
          tolerations: [
            { key: 'dedicated', operator: 'Equal', value: 'infra', effect: 'NoSchedule' },
          ],
          affinity,
          priorityClassName: 'system-cluster-critical',
          podAnnotations: { 'example.com/scrape': 'true' },
          // A pod label cannot take the selector's: the Deployment would lose its pods.
          podLabels: { team: 'vm', 'app.kubernetes.io/component': 'mine' },
        },
        agent: {
          image: { digest: digest('b') },
          tolerations: [{ key: 'kvm', operator: 'Exists' }],
          affinity,
          priorityClassName: 'kova-agents',
          podAnnotations: { 'example.com/owner': 'ops' },
          podLabels: { team: 'vm' },
          updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '25%' } },
        },
      }),
    );
    try {
      const objs = rendered('-f', values);
      const operator = operatorPod(objs);
      expect(container(operator).image).toBe(`ghcr.io/kova-dev/kova-operator@${digest('a')}`);
      expect(operator.spec.nodeSelector).toEqual({ 'node-role.kubernetes.io/control-plane': '' });
      expect(operator.spec.tolerations).toEqual([
        { key: 'dedicated', operator: 'Equal', value: 'infra', effect: 'NoSchedule' },
      ]);
      expect(operator.spec.affinity).toEqual(affinity);
      expect(operator.spec.priorityClassName).toBe('system-cluster-critical');
      expect(operator.spec.imagePullSecrets).toEqual([{ name: 'regcred' }]);
      expect(operator.metadata.annotations).toEqual({ 'example.com/scrape': 'true' });
      expect(operator.metadata.labels).toEqual({
        'app.kubernetes.io/name': 'kova',
        'app.kubernetes.io/instance': 'kova',
        'app.kubernetes.io/component': 'operator',
        team: 'vm',
      });
      const agent = agentPod(objs);
      expect(container(agent).image).toBe(`ghcr.io/kova-dev/kova-node-agent@${digest('b')}`);
      expect(agent.spec.nodeSelector).toEqual({ 'compute.kova.dev/hypervisor': 'true' });
      expect(agent.spec.tolerations).toEqual([{ key: 'kvm', operator: 'Exists' }]);
      expect(agent.spec.affinity).toEqual(affinity);
      expect(agent.spec.priorityClassName).toBe('kova-agents');
      expect(agent.spec.imagePullSecrets).toEqual([{ name: 'regcred' }]);
      expect(agent.metadata.annotations).toEqual({ 'example.com/owner': 'ops' });
      expect(agent.metadata.labels.team).toBe('vm');
      expect(get(objs, 'DaemonSet', 'kova-node-agent').spec.updateStrategy).toEqual({
        type: 'RollingUpdate',
        rollingUpdate: { maxUnavailable: '25%' },
      });
      // The hooks run the operator image as pinned, where the operator may run.
      const guard = get(objs, 'Job', 'kova-uninstall-check').spec.template;
      const test = get(objs, 'Pod', 'kova-check-install');
      for (const pod of [guard, test]) {
        expect(container(pod).image).toBe(`ghcr.io/kova-dev/kova-operator@${digest('a')}`);
        expect(pod.spec.imagePullSecrets).toEqual([{ name: 'regcred' }]);
        expect(pod.spec.tolerations).toEqual(operator.spec.tolerations);
      }
      const out = kubectl(
        ['apply', '--dry-run=server', '-n', 'kova-chart-test', '-f', '-'],
        template('-n', 'kova-chart-test', '--skip-tests', '-f', values),
      );
      expect(out).toContain('daemonset.apps/kova-node-agent created (server dry run)');
    } finally {
      rmSync(values, { force: true });
    }
  });

  it("takes the agent grace period as set, independent of the guests' shutdown timeout", () => {
    const grace = (...args: string[]) =>
      agentPod(rendered(...args)).spec.terminationGracePeriodSeconds;
    expect(grace('--set', 'agent.shutdownTimeoutSeconds=300')).toBe(60);
    expect(grace('--set', 'agent.terminationGracePeriodSeconds=10')).toBe(10);
    expect(() => grace('--set', 'agent.terminationGracePeriodSeconds=null')).not.toThrow();
    expect(() => grace('--set', 'agent.terminationGracePeriodSeconds=0')).toThrow(
      /terminationGracePeriodSeconds/,
    );
  });

  it("renders with the previous chart version's values, as helm upgrade --reuse-values does", () => {
    const previous = execFileSync('git', ['show', '42e58b2:charts/kova/values.yaml'], {
      cwd: root,
      encoding: 'utf8',
    });
    const out = renderWithChartValues(previous);
    const objs = kinds(out) as unknown as Rendered[];
    const agent = get(objs, 'DaemonSet', 'kova-node-agent');
    // Values the previous chart lacks render as this chart's defaults.
    expect(agent.spec.template.spec.terminationGracePeriodSeconds).toBe(60);
    expect(agent.spec.updateStrategy).toEqual({
      type: 'RollingUpdate',
      rollingUpdate: { maxUnavailable: 1 },
    });
    expect(container(agent.spec.template).ports).toEqual([
      { name: 'metrics', containerPort: 8081 },
      { name: 'console', containerPort: 8082 },
    ]);
    expect(container(agent.spec.template).image).toBe('ghcr.io/kova-dev/kova-node-agent:0.1.0');
    expect(get(objs, 'Job', 'kova-uninstall-check').spec.backoffLimit).toBe(0);
    expect(get(objs, 'Pod', 'kova-check-install').spec.serviceAccountName).toBe(
      'kova-check-install',
    );
    const applied = kubectl(
      ['apply', '--dry-run=server', '-n', 'kova-chart-test', '-f', '-'],
      renderWithChartValues(previous, '--skip-tests'),
    );
    expect(applied).toContain('daemonset.apps/kova-node-agent created (server dry run)');
  });

  it('rejects misspelt or malformed values in every section', () => {
    for (const typo of [
      'agent.toleration[0].operator=Exists',
      'operator.podLabel.team=vm',
      'operator.image.tag=1.0',
      'agent.updateStrategy.rollingUpdate.maxSurge=1',
      'metrics.serviceMonitor.label.release=prom',
      'podDisruptionBudget.minAvailble=1',
      'nodeIsolation.enable=false',
      'uninstall.blockIfInstancesExists=false',
      'imagePullSecret[0].name=regcred',
    ])
      expect(() => template('--set', typo)).toThrow(/additional properties|Additional property/i);
    expect(() => template('--set', 'agent.image.digest=sha256:abc')).toThrow(/digest/);
    expect(() => template('--set', 'agent.healthAddress=10.0.0.1')).toThrow(/healthAddress/);
    expect(() => template('--set', 'agent.healthPort=0')).toThrow(/healthPort/);
    // The API server refuses 0%; a number is at least 1 already.
    for (const none of ['0%', '00%', '0'])
      expect(() =>
        template('--set', `agent.updateStrategy.rollingUpdate.maxUnavailable=${none}`),
      ).toThrow(/maxUnavailable/);
    expect(
      get(
        rendered('--set', 'agent.updateStrategy.rollingUpdate.maxUnavailable=10%'),
        'DaemonSet',
        'kova-node-agent',
      ).spec.updateStrategy,
    ).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '10%' } });
  });

  it('refuses an agent without a node selector: with its tolerations it would run on every node', () => {
    // --set ...=null deletes the key; an empty map can only come from a values.yaml (Helm merges
    // a user's {} into the chart's), as with --reuse-values.
    expect(() => template('--set', 'agent.nodeSelector=null')).toThrow(
      /missing property 'nodeSelector'/,
    );
    const defaults = readFileSync(join(chart, 'values.yaml'), 'utf8');
    const emptied = defaults.replace(
      'nodeSelector:\n    compute.kova.dev/hypervisor: "true"\n',
      'nodeSelector: {}\n',
    );
    expect(emptied).not.toBe(defaults);
    expect(() => renderWithChartValues(emptied)).toThrow(
      /'\/agent\/nodeSelector': minProperties: got 0, want 1/,
    );
  });

  it("puts the agent's console endpoint on the node's InternalIP and agent.consolePort", () => {
    const agent = container(agentPod(rendered('--set', 'agent.consolePort=9443')));
    expect(agent.ports).toContainEqual({ name: 'console', containerPort: 9443 });
    expect(env(agent, 'KOVA_CONSOLE_PORT')).toBe('9443');
    expect(agent.env?.find((e) => e.name === 'KOVA_CONSOLE_ADDRESS')?.valueFrom).toEqual({
      fieldRef: { fieldPath: 'status.hostIP' },
    });
  });

  it('serves agent health and metrics on the configured host port, probed on 127.0.0.1, listening where agent.healthAddress says', () => {
    const objs = rendered(
      '--set',
      'agent.healthPort=9464',
      '--set',
      'metrics.serviceMonitor.enabled=true',
    );
    const agent = container(agentPod(objs));
    expect(agent.ports).toEqual([
      { name: 'metrics', containerPort: 9464 },
      { name: 'console', containerPort: 8082 },
    ]);
    expect(env(agent, 'KOVA_HEALTH_PORT')).toBe('9464');
    expect(env(agent, 'KOVA_HEALTH_ADDRESS')).toBeUndefined();
    for (const probe of [agent.readinessProbe, agent.livenessProbe])
      expect(probe?.httpGet).toMatchObject({ host: '127.0.0.1', port: 'metrics' });
    expect(get(objs, 'Service', 'kova-node-agent-metrics').spec.ports).toEqual([
      { name: 'metrics', port: 9464, targetPort: 'metrics' },
    ]);
    expect(get(objs, 'ServiceMonitor', 'kova-node-agent').spec.endpoints?.[0]?.port).toBe(
      'metrics',
    );
    const loopback = container(agentPod(rendered('--set', 'agent.healthAddress=127.0.0.1')));
    expect(env(loopback, 'KOVA_HEALTH_ADDRESS')).toBe('127.0.0.1');
  });

  it("refuses ServiceMonitors when the agents' metrics listen on loopback only, where Prometheus cannot scrape them", () => {
    expect(() =>
      rendered(
        '--set',
        'agent.healthAddress=127.0.0.1',
        '--set',
        'metrics.serviceMonitor.enabled=true',
      ),
    ).toThrow(
      /metrics.serviceMonitor.enabled with agent.healthAddress 127.0.0.1: .*Prometheus cannot scrape them; set agent.healthAddress to "" \(all addresses\) or metrics.serviceMonitor.enabled to false/,
    );
    for (const address of ['0.0.0.0', '::'])
      expect(
        rendered(
          '--set',
          `agent.healthAddress=${address}`,
          '--set',
          'metrics.serviceMonitor.enabled=true',
        ).filter((o) => o.kind === 'ServiceMonitor'),
      ).toHaveLength(2);
  });

  it('puts ServiceMonitors for both components where asked, with the labels asked, selecting the release namespace', () => {
    const monitors = (...args: string[]) =>
      rendered('--set', 'metrics.serviceMonitor.enabled=true', ...args).filter(
        (o) => o.kind === 'ServiceMonitor',
      );
    const byDefault = monitors();
    expect(byDefault.map((m) => m.metadata.name).sort()).toEqual([
      'kova-node-agent',
      'kova-operator',
    ]);
    for (const m of byDefault) expect(m.metadata.namespace).toBe('kova-chart-test');
    const moved = monitors(
      '--set',
      'metrics.serviceMonitor.namespace=monitoring',
      '--set',
      'metrics.serviceMonitor.labels.release=prometheus',
    );
    for (const m of moved) {
      expect(m.metadata.namespace).toBe('monitoring');
      expect(m.metadata.labels?.release).toBe('prometheus');
      expect(m.spec.namespaceSelector).toEqual({ matchNames: ['kova-chart-test'] });
    }
    // Each selects its own component's metrics Service.
    const services = rendered().filter((o) => o.kind === 'Service');
    for (const m of moved) {
      const selector = (m.spec as unknown as { selector: { matchLabels: Record<string, string> } })
        .selector.matchLabels;
      const matched = services.filter((s) =>
        Object.entries(selector).every(([k, v]) => s.metadata.labels?.[k] === v),
      );
      expect(matched.map((s) => s.metadata.name)).toEqual([`${m.metadata.name}-metrics`]);
    }
  });

  it('says in NOTES what the namespace needs, and how to label a node with several selector labels', () => {
    // A dry run against the real API server: Helm renders NOTES.txt only for install.
    const notes = helm(
      'install',
      'kova',
      chart,
      '-n',
      'kova-chart-test',
      '--dry-run=server',
      '--take-ownership',
      '--set',
      'agent.nodeSelector.zone=a',
    );
    expect(notes).toContain('kubectl label node <node> compute.kova.dev/hypervisor=true zone=a\n');
    expect(notes).toContain(
      'kubectl label namespace kova-chart-test pod-security.kubernetes.io/enforce=privileged',
    );
    expect(notes).toContain('helm test kova -n kova-chart-test');
  });

  it('needs a privileged namespace for the agent: Pod Security refuses its pods under baseline and restricted, and admits them, node-critical, under privileged', () => {
    const podOf = (tpl: PodTemplate, name: string) =>
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name, labels: tpl.metadata.labels },
        spec: tpl.spec,
      });
    const objs = rendered();
    const agent = podOf(agentPod(objs), 'kova-node-agent-x');
    const create = (level: string, pod: string) =>
      run(['create', '--dry-run=server', '-o', 'json', '-n', psaNamespace(level), '-f', '-'], pod);
    for (const level of ['restricted', 'baseline']) {
      const refused = create(level, agent);
      expect(refused.status).not.toBe(0);
      expect(refused.stderr).toContain(`violates PodSecurity "${level}:latest"`);
      expect(refused.stderr).toMatch(/host namespaces \(hostNetwork=true\)/);
    }
    const admitted = create('privileged', agent);
    expect(admitted.stderr).toBe('');
    // The Priority admission plugin resolved system-node-critical outside kube-system.
    const pod = JSON.parse(admitted.stdout) as { spec: { priority: number } };
    expect(pod.spec.priority).toBe(2000001000);
    // On the DaemonSet itself Pod Security only warns: the pods are what it refuses.
    const daemonSet = get(objs, 'DaemonSet', 'kova-node-agent');
    const ds = run(
      ['apply', '--dry-run=server', '-n', psaNamespace('restricted'), '-f', '-'],
      JSON.stringify({ ...daemonSet, metadata: { name: daemonSet.metadata.name } }),
    );
    expect(ds.stderr).toContain('would violate PodSecurity "restricted:latest"');
    expect(ds.status).toBe(0);
  });

  it('runs the operator, the uninstall guard and the helm test within Pod Security restricted', () => {
    const objs = rendered();
    const pods = {
      operator: operatorPod(objs),
      'uninstall-check': get(objs, 'Job', 'kova-uninstall-check').spec.template,
      'check-install': get(objs, 'Pod', 'kova-check-install') as unknown as PodTemplate,
    };
    for (const [name, tpl] of Object.entries(pods)) {
      const r = run(
        ['create', '--dry-run=server', '-n', psaNamespace('restricted'), '-f', '-'],
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: `kova-${name}-x` },
          spec: { ...tpl.spec, restartPolicy: name === 'operator' ? 'Always' : 'Never' },
        }),
      );
      expect(`${name}: ${r.stderr}`).toBe(`${name}: `);
      expect(r.stdout).toContain('created (server dry run)');
    }
  });

  it('guards helm uninstall with a pre-delete hook Job that may only list Instances, and drops it on request', () => {
    const objs = rendered();
    const hooks = hookObjects(objs, 'kova-uninstall-check', 'pre-delete', 'Job', [
      'ClusterRole',
      'ClusterRoleBinding',
    ]);
    const job = get(objs, 'Job', 'kova-uninstall-check');
    expect(job.metadata.annotations?.['helm.sh/hook-output-log-policy']).toBe('hook-failed');
    expect(job.spec.backoffLimit).toBe(0);
    expect(job.spec.activeDeadlineSeconds).toBeGreaterThan(0);
    const pod = job.spec.template.spec;
    expect(pod.serviceAccountName).toBe('kova-uninstall-check');
    expect(container(job.spec.template).args).toEqual(['check-uninstall']);
    expect(env(container(job.spec.template), 'KOVA_RELEASE_NAME')).toBe('kova');
    expect(pod.securityContext).toEqual(operatorPod(objs).spec.securityContext);

    const rbac = hooks.filter((o) => o.kind !== 'Job');
    kubectl(
      ['apply', '-n', 'kova-chart-test', '-f', '-'],
      JSON.stringify({ apiVersion: 'v1', kind: 'List', items: rbac }),
    );
    const guard = 'system:serviceaccount:kova-chart-test:kova-uninstall-check';
    expect(can(guard, 'list', 'instances.compute.kova.dev')).toBe('yes');
    for (const [verb, resource] of [
      ['delete', 'instances.compute.kova.dev'],
      ['get', 'instances.compute.kova.dev'],
      ['list', 'secrets'],
    ] as const)
      expect(`${verb} ${resource}: ${can(guard, verb, resource)}`).toBe(`${verb} ${resource}: no`);

    const off = rendered('--set', 'uninstall.blockIfInstancesExist=false');
    expect(off.filter((o) => o.metadata.name === 'kova-uninstall-check')).toEqual([]);
  });

  it('has a helm test Pod that runs check-install under its own account, which may only read the leader Lease', () => {
    const objs = rendered();
    const hooks = hookObjects(objs, 'kova-check-install', 'test', 'Pod', ['Role', 'RoleBinding']);
    const test = get(objs, 'Pod', 'kova-check-install');
    expect(test.spec.serviceAccountName).toBe('kova-check-install');
    expect(container(test).args).toEqual(['check-install']);
    expect(
      rendered('--skip-tests').filter((o) => o.metadata.name === 'kova-check-install'),
    ).toEqual([]);

    const rbac = hooks.filter((o) => o.kind !== 'Pod');
    kubectl(
      ['apply', '-n', 'kova-chart-test', '-f', '-'],
      JSON.stringify({ apiVersion: 'v1', kind: 'List', items: rbac }),
    );
    const tester = 'system:serviceaccount:kova-chart-test:kova-check-install';
    // By name (TYPE/NAME): can() would take the name for a subresource.
    const lease = (verb: string, name: string) =>
      run([
        'auth',
        'can-i',
        '-n',
        'kova-chart-test',
        `--as=${tester}`,
        verb,
        `leases.coordination.k8s.io/${name}`,
      ]).stdout.trim();
    expect(lease('get', 'kova-operator')).toBe('yes');
    expect(lease('get', 'kova-other')).toBe('no');
    expect(lease('update', 'kova-operator')).toBe('no');
    for (const [verb, resource] of [
      ['list', 'leases.coordination.k8s.io'],
      ['list', 'instances.compute.kova.dev'],
      ['patch', 'customresourcedefinitions.apiextensions.k8s.io'],
      ['list', 'secrets'],
    ] as const)
      expect(`${verb} ${resource}: ${can(tester, verb, resource)}`).toBe(`${verb} ${resource}: no`);
  });
});
