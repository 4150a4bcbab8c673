// The chart's node isolation, judged by the real API server: the chart's RBAC and
// ValidatingAdmissionPolicy applied for real, then writes made as node agent A (impersonating
// its service account with the node name a pod-bound token carries). A may write its own
// node's Instance status, finalizers, Hypervisor and Lease; anything of node B is denied, and
// so is any change to an Instance's spec.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { kubectlPath } from './control-plane.js';
import { until } from './until.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const NS = 'kova-isolation';
const AGENT = `system:serviceaccount:${NS}:kova-node-agent`;
const helm = (...args: string[]) =>
  execFileSync(join(dirname(kubectlPath()), 'helm'), args, { encoding: 'utf8', stdio: 'pipe' });
const kubectl = (args: string[], input?: string) =>
  execFileSync(kubectlPath(), args, { encoding: 'utf8', stdio: 'pipe', input });

/** Runs kubectl as node agent `node` (or with no node name); returns '' or the denial. */
function asAgent(node: string | undefined, args: string[], input?: string): string {
  const identity = [
    `--as=${AGENT}`,
    ...(node ? [`--as-user-extra=authentication.kubernetes.io/node-name=${node}`] : []),
  ];
  try {
    kubectl([...args, ...identity], input);
    return '';
  } catch (err) {
    return String((err as { stderr?: string }).stderr ?? err);
  }
}

const patchStatus = (node: string | undefined, inst: string) =>
  asAgent(node, [
    'patch',
    'instance',
    inst,
    '-n',
    'default',
    '--subresource=status',
    '--type=merge',
    '-p',
    '{"status":{"powerState":"Running"}}',
  ]);

beforeAll(async () => {
  kubectl(['create', 'namespace', NS]);
  // The chart states the Kubernetes it needs; render it for the API server at hand.
  const { serverVersion } = JSON.parse(kubectl(['version', '-o', 'json'])) as {
    serverVersion: { gitVersion: string };
  };
  const rendered = parseAllDocuments(
    helm(
      'template',
      'kova',
      join(root, 'charts', 'kova'),
      '-n',
      NS,
      '--kube-version',
      serverVersion.gitVersion,
    ),
  )
    .map((d) => d.toJS() as { kind: string })
    .filter(Boolean);
  const wanted = [
    'ServiceAccount',
    'ClusterRole',
    'ClusterRoleBinding',
    'Role',
    'RoleBinding',
    'ValidatingAdmissionPolicy',
    'ValidatingAdmissionPolicyBinding',
  ];
  kubectl(
    ['apply', '-n', NS, '-f', '-'],
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'List',
      items: rendered.filter((o) => wanted.includes(o.kind)),
    }),
  );
  for (const node of ['iso-a', 'iso-b']) {
    kubectl(
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'compute.kova.dev/v1alpha1',
        kind: 'Hypervisor',
        metadata: { name: node },
        spec: {},
      }),
    );
    kubectl(
      ['apply', '-n', 'default', '-f', '-'],
      JSON.stringify({
        apiVersion: 'compute.kova.dev/v1alpha1',
        kind: 'Instance',
        metadata: { name: `vm-${node}`, finalizers: ['compute.kova.dev/node-cleanup'] },
        spec: { flavor: 'm1.nano', image: 'kova-guest', networks: [{ network: 'default' }] },
      }),
    );
    kubectl([
      'patch',
      'instance',
      `vm-${node}`,
      '-n',
      'default',
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify({ status: { phase: 'Active', nodeName: node } }),
    ]);
  }
  // A new policy takes a moment to be enforced.
  await until(
    'the policy to be enforced',
    () => patchStatus('iso-a', 'vm-iso-b') !== '',
    30_000,
    200,
  );
});

afterAll(() => {
  kubectl([
    'delete',
    'validatingadmissionpolicybinding,validatingadmissionpolicy',
    'kova-node-isolation',
    'kova-action-requester',
    '--ignore-not-found',
  ]);
  kubectl(['delete', 'instanceactions', '--all', '-n', 'default']);
  for (const node of ['iso-a', 'iso-b']) {
    kubectl([
      'patch',
      'instance',
      `vm-${node}`,
      '-n',
      'default',
      '--type=merge',
      '-p',
      '{"metadata":{"finalizers":null}}',
    ]);
    kubectl(['delete', 'instance', `vm-${node}`, '-n', 'default']);
    kubectl(['delete', 'hypervisor', node]);
  }
  kubectl(['delete', 'namespace', NS, '--wait=false']);
});

describe('node isolation (chart ValidatingAdmissionPolicy)', () => {
  it("lets agent A write the status of an Instance bound to its node, and denies node B's", () => {
    expect(patchStatus('iso-a', 'vm-iso-a')).toBe('');
    expect(patchStatus('iso-a', 'vm-iso-b')).toContain(
      'the node agent of iso-a may only write Instances bound to iso-a',
    );
  });

  it('denies agent A moving an Instance to another node', () => {
    const out = asAgent('iso-a', [
      'patch',
      'instance',
      'vm-iso-a',
      '-n',
      'default',
      '--subresource=status',
      '--type=merge',
      '-p',
      '{"status":{"nodeName":"iso-b"}}',
    ]);
    expect(out).toContain('may only write Instances bound to iso-a');
  });

  it('denies agent A any change to an Instance spec, even on its own node', () => {
    const out = asAgent('iso-a', [
      'patch',
      'instance',
      'vm-iso-a',
      '-n',
      'default',
      '--type=merge',
      '-p',
      '{"spec":{"runStrategy":"Halted"}}',
    ]);
    expect(out).toContain('may change only the status and the finalizers of an Instance');
    expect(
      kubectl([
        'get',
        'instance',
        'vm-iso-a',
        '-n',
        'default',
        '-o',
        'jsonpath={.spec.runStrategy}',
      ]),
    ).toBe('Always');
  });

  it('lets agent A lift its finalizer from its own Instance only', () => {
    const lift = (inst: string) =>
      asAgent('iso-a', [
        'patch',
        'instance',
        inst,
        '-n',
        'default',
        '--type=merge',
        '-p',
        '{"metadata":{"finalizers":null}}',
      ]);
    expect(lift('vm-iso-b')).toContain('may only write Instances bound to iso-a');
    expect(lift('vm-iso-a')).toBe('');
  });

  it("lets agent A write its own Hypervisor and heartbeat Lease, not node B's", () => {
    const hv = (name: string) =>
      asAgent('iso-a', [
        'patch',
        'hypervisor',
        name,
        '--subresource=status',
        '--type=merge',
        '-p',
        '{"status":{"instanceCount":1}}',
      ]);
    expect(hv('iso-a')).toBe('');
    expect(hv('iso-b')).toContain('may only write Hypervisor iso-a');
    const lease = (name: string) =>
      asAgent(
        'iso-a',
        ['create', '-n', NS, '-f', '-'],
        JSON.stringify({
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name },
          spec: { holderIdentity: name, leaseDurationSeconds: 40 },
        }),
      );
    expect(lease('iso-a')).toBe('');
    expect(lease('iso-b')).toContain('may only write its own heartbeat Lease iso-a');
  });

  it('lets agent A write the status of InstanceActions handed to its node only, and create none', () => {
    const user = kubectl(['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}']);
    const action = (node: string) => {
      const name = kubectl(
        ['create', '-n', 'default', '-o', 'name', '-f', '-'],
        JSON.stringify({
          apiVersion: 'compute.kova.dev/v1alpha1',
          kind: 'InstanceAction',
          metadata: { generateName: `act-${node}-` },
          spec: { instance: `vm-${node}`, action: 'Reboot', requestedBy: user },
        }),
      ).trim();
      // The operator's part: accept it for the node.
      kubectl([
        'patch',
        name,
        '-n',
        'default',
        '--subresource=status',
        '--type=merge',
        '-p',
        JSON.stringify({ status: { phase: 'Accepted', nodeName: node } }),
      ]);
      return name;
    };
    const run = (name: string, status: object) =>
      asAgent('iso-a', [
        'patch',
        name,
        '-n',
        'default',
        '--subresource=status',
        '--type=merge',
        '-p',
        JSON.stringify({ status }),
      ]);
    const mine = action('iso-a');
    const theirs = action('iso-b');
    expect(run(mine, { phase: 'Running' })).toBe('');
    expect(run(theirs, { phase: 'Running' })).toContain(
      'may only write the status of InstanceActions handed to iso-a',
    );
    expect(run(mine, { nodeName: 'iso-b' })).toContain('handed to iso-a');
    const create = asAgent(
      'iso-a',
      ['create', '-n', 'default', '-f', '-'],
      JSON.stringify({
        apiVersion: 'compute.kova.dev/v1alpha1',
        kind: 'InstanceAction',
        metadata: { generateName: 'by-agent-' },
        spec: { instance: 'vm-iso-b', action: 'Stop', requestedBy: AGENT },
      }),
    );
    expect(create).toContain('forbidden');
  });

  it('denies an agent token that names no node', () => {
    expect(patchStatus(undefined, 'vm-iso-a')).toContain('names no node');
  });
});
