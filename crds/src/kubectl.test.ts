// What a user sees with kubectl against the real API server: the kova category, printer
// columns, short names and `kubectl explain` text.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { CoreV1Api } from '@kubernetes/client-node';
import { loadKubeConfig } from '@kova/controller-kit';
import { applyFile, kubectlPath } from '@kova/hack';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crdManifests } from './index.js';

const examplesDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'examples');
const kubectl = (...args: string[]) =>
  execFileSync(kubectlPath(), args, { encoding: 'utf8', stdio: 'pipe' });
const ns = `kubectl-${Math.random().toString(36).slice(2, 7)}`;

beforeAll(async () => {
  await loadKubeConfig()
    .makeApiClient(CoreV1Api)
    .createNamespace({ body: { metadata: { name: ns } } });
  for (const f of ['flavors.yaml', 'network.yaml', 'image.yaml'])
    await applyFile(join(examplesDir, f));
  kubectl(
    'apply',
    '-n',
    ns,
    '-f',
    join(examplesDir, 'servergroup.yaml'),
    '-f',
    join(examplesDir, 'instance.yaml'),
  );
});

afterAll(async () => {
  await loadKubeConfig().makeApiClient(CoreV1Api).deleteNamespace({ name: ns });
});

describe('kubectl against the local control plane', () => {
  it('lists every kova resource under `kubectl get kova`', () => {
    const out = kubectl('get', 'kova', '-n', ns);
    for (const kind of [
      'instance.compute.kova.dev/web-1',
      'flavor.compute.kova.dev/m1.tiny',
      'network.compute.kova.dev/default',
      'image.compute.kova.dev/ubuntu-24.04',
      'servergroup.compute.kova.dev/web',
    ]) {
      expect(out).toContain(kind);
    }
  });

  it('shows the Instance printer columns and resolves the short names', () => {
    const header = kubectl('get', 'inst', '-n', ns).split('\n')[0] ?? '';
    expect(header.split(/\s+/).filter(Boolean)).toEqual([
      'NAME',
      'PHASE',
      'POWER',
      'TASK',
      'NODE',
      'IP',
      'FLAVOR',
      'AGE',
    ]);
    expect(kubectl('get', 'flv', 'm1.tiny')).toMatch(/m1\.tiny\s+1\s+512\s+1/);
    expect(kubectl('get', 'net', 'default')).toMatch(
      /default\s+10\.77\.0\.0\/24\s+10\.77\.0\.1\s+kova-br0/,
    );
    for (const short of ['img', 'sg', 'hv', 'ia'])
      expect(() => kubectl('get', short, '-n', ns)).not.toThrow();
  });

  it('explains fields in words a user can act on', () => {
    const out = kubectl('explain', 'instance.spec.networks');
    expect(out).toContain('KIND:       Instance');
    expect(out).toContain('Networks the Instance is attached to');
    expect(out).toContain('fixedIP');
    expect(out).toContain('A specific IPv4 address to use on this Network');
    expect(kubectl('explain', 'instance.status.phase')).toContain('Step of the boot');
    expect(kubectl('explain', 'instanceaction.spec.action')).toContain(
      'Reboot shuts the guest down and starts it again',
    );
  });

  it('registers the seven user-facing CRDs and the address bookkeeping one, each established', async () => {
    const out = kubectl(
      'get',
      'crd',
      '-o',
      'jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Established")].status}{"\\n"}{end}',
    );
    const names = (await crdManifests()).map((c) => (c.metadata as { name: string }).name).sort();
    expect(names).toEqual(
      [
        'flavors',
        'hypervisors',
        'images',
        'instanceactions',
        'instances',
        'ipblocks',
        'networks',
        'servergroups',
      ].map((p) => `${p}.compute.kova.dev`),
    );
    for (const name of names) expect(out).toContain(`${name}=True`);
  });
});
