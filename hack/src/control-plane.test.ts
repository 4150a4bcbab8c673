import { describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { kubectlPath, LocalControlPlane } from './control-plane.js';

const pinned = Object.fromEntries(
  readFileSync(
    join(dirname(fileURLToPath(import.meta.url)), '..', 'control-plane', 'versions.env'),
    'utf8',
  )
    .split('\n')
    .filter((l) => /^[A-Z_]+=/.test(l))
    .map((l) => l.split('=') as [string, string]),
);

const pids = (pattern: string) => {
  try {
    return execFileSync('pgrep', ['-f', pattern]).toString().trim().split('\n').filter(Boolean);
  } catch {
    return [];
  }
};

describe('local control plane', () => {
  it('serves the pinned Kubernetes version to kubectl and leaves nothing behind when stopped', async () => {
    const cp = await LocalControlPlane.start();
    const { dir, kubeconfigPath } = cp.endpoints;
    try {
      expect(await cp.serverVersion()).toBe(pinned.KUBERNETES_VERSION);
      const version = JSON.parse(
        execFileSync(kubectlPath(), [
          '--kubeconfig',
          kubeconfigPath,
          'version',
          '-o',
          'json',
        ]).toString(),
      );
      expect(version.serverVersion.gitVersion).toBe(pinned.KUBERNETES_VERSION);
      expect(pids(dir).length).toBeGreaterThanOrEqual(3);
    } finally {
      await cp.stop();
    }
    expect(pids(dir)).toEqual([]);
    expect(existsSync(dir)).toBe(false);
  });

  it('restarts one component in place', async () => {
    const cp = await LocalControlPlane.start({ controllerManager: false });
    try {
      await cp.stopComponent('kube-apiserver');
      await expect(cp.serverVersion()).rejects.toThrow();
      await cp.startComponent('kube-apiserver');
      expect(await cp.serverVersion()).toBe(pinned.KUBERNETES_VERSION);
    } finally {
      await cp.stop();
    }
  });
});
