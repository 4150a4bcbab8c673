// A real kubelet node on this machine (hack/kubelet-node/up.sh): it joins a local control plane
// and goes Ready, and runs kova's images, imported into its containerd without a registry, in
// pods as the chart runs them (the operator as non-root).
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { kubectlPath, LocalControlPlane } from './control-plane.js';
import { until } from './until.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const NODE = 'kova-kubelet-test';
let cp: LocalControlPlane;
const dir = mkdtempSync(join(tmpdir(), 'kova-kubelet-node-'));
const kubectl = (...args: string[]) =>
  execFileSync(kubectlPath(), ['--kubeconfig', cp.endpoints.kubeconfigPath, ...args], {
    encoding: 'utf8',
    stdio: 'pipe',
  });
const script = (name: string) => [
  join(root, 'hack', 'kubelet-node', name),
  dir,
  cp.endpoints.kubeconfigPath,
  NODE,
];

beforeAll(async () => {
  cp = await LocalControlPlane.start();
  execFileSync('bash', script('up.sh'), { stdio: ['ignore', 'ignore', 'inherit'] });
}, 900_000);

afterAll(async () => {
  if (cp) execFileSync('bash', script('down.sh'), { stdio: 'inherit' });
  await cp?.stop();
}, 120_000);

describe('kubelet node', () => {
  it('registers a Ready Node labelled as a kova hypervisor', () => {
    const node = JSON.parse(kubectl('get', 'node', NODE, '-o', 'json')) as {
      metadata: { labels: Record<string, string> };
      status: { conditions: { type: string; status: string }[] };
    };
    expect(node.status.conditions.find((c) => c.type === 'Ready')?.status).toBe('True');
    expect(node.metadata.labels['compute.kova.dev/hypervisor']).toBe('true');
  });

  it.each([
    ['kova-operator', 65532],
    ['kova-node-agent', 0],
  ])(
    'runs %s from its imported image in a pod, as uid %i',
    async (name, runAs) => {
      const pod = {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: `${name}-version`, namespace: 'default' },
        spec: {
          nodeName: NODE,
          restartPolicy: 'Never',
          automountServiceAccountToken: false,
          securityContext: runAs ? { runAsNonRoot: true, runAsUser: runAs } : {},
          containers: [
            {
              name,
              image: `ghcr.io/kova-dev/${name}:0.1.0`,
              imagePullPolicy: 'Never',
              args: ['--version'],
            },
          ],
        },
      };
      execFileSync(
        kubectlPath(),
        ['--kubeconfig', cp.endpoints.kubeconfigPath, 'apply', '-f', '-'],
        { input: JSON.stringify(pod), stdio: ['pipe', 'ignore', 'inherit'] },
      );
      const phase = await until(
        `pod ${name}-version to finish`,
        () => {
          const p = kubectl('get', 'pod', `${name}-version`, '-o', 'jsonpath={.status.phase}');
          return ['Succeeded', 'Failed'].includes(p) && p;
        },
        120_000,
        500,
      );
      expect(phase).toBe('Succeeded');
      // The kubelet's log of the container (CRI format: time, stream, tag, line), read on the node.
      const uid = kubectl('get', 'pod', `${name}-version`, '-o', 'jsonpath={.metadata.uid}');
      const log = readFileSync(
        join(dir, 'logs', 'pods', `default_${name}-version_${uid}`, name, '0.log'),
        'utf8',
      );
      expect(log).toMatch(new RegExp(` stdout F ${name} \\d+\\.`));
    },
    180_000,
  );
});
