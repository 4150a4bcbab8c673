import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { CoreV1Api, type KubeConfig, type V1ConfigMap } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import { Informer, objectKey } from './informer.js';
import { loadKubeConfig } from './kubeconfig.js';
import { LocalControlPlane, until } from '@kova/hack';
import { createNamespace, deleteNamespace } from './test-support.js';

const configMaps = (namespace?: string) => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  plural: 'configmaps',
  namespace,
});

describe('Informer on the shared API server', () => {
  let kc: KubeConfig;
  let core: CoreV1Api;
  let ns: string;

  beforeAll(async () => {
    kc = loadKubeConfig();
    core = kc.makeApiClient(CoreV1Api);
    ns = await createNamespace(kc, 'informer');
  });
  afterAll(() => deleteNamespace(kc, ns));

  it('lists what exists before it starts, then delivers adds, updates and deletes', async () => {
    await core.createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: 'before' }, data: { v: '1' } },
    });
    const informer = new Informer<V1ConfigMap>(kc, configMaps(ns), { registry: new Registry() });
    const events: string[] = [];
    informer.on((o, type) => events.push(`${type}:${objectKey(o)}`));
    await informer.start();
    try {
      expect(informer.hasSynced()).toBe(true);
      expect(informer.get('before', ns)?.data?.v).toBe('1');
      await core.createNamespacedConfigMap({
        namespace: ns,
        body: { metadata: { name: 'after' } },
      });
      await core.patchNamespacedConfigMap({
        namespace: ns,
        name: 'before',
        body: [{ op: 'replace', path: '/data/v', value: '2' }],
      });
      await core.deleteNamespacedConfigMap({ namespace: ns, name: 'after' });
      await until('delete event', () => events.includes(`delete:${ns}/after`), 10_000);
      expect(events).toEqual([
        `add:${ns}/before`,
        `add:${ns}/after`,
        `update:${ns}/before`,
        `delete:${ns}/after`,
      ]);
      expect(informer.get('before', ns)?.data?.v).toBe('2');
    } finally {
      await informer.stop();
    }
  });

  it('watches only what its label selector picks', async () => {
    const informer = new Informer<V1ConfigMap>(kc, configMaps(ns), {
      labelSelector: 'pick=yes',
      registry: new Registry(),
    });
    await informer.start();
    try {
      await core.createNamespacedConfigMap({
        namespace: ns,
        body: { metadata: { name: 'skip-me' } },
      });
      await core.createNamespacedConfigMap({
        namespace: ns,
        body: { metadata: { name: 'pick-me', labels: { pick: 'yes' } } },
      });
      await until('labelled object', () => informer.get('pick-me', ns), 10_000);
      expect(informer.get('skip-me', ns)).toBeUndefined();
    } finally {
      await informer.stop();
    }
  });
});

describe('Informer across an API server restart', () => {
  it('recovers by itself and ends with the true state, including changes made while it was away', async () => {
    const cp = await LocalControlPlane.start({ controllerManager: false });
    const kc = loadKubeConfig(cp.endpoints.kubeconfigPath);
    const core = kc.makeApiClient(CoreV1Api);
    const registry = new Registry();
    const informer = new Informer<V1ConfigMap>(kc, configMaps('default'), {
      registry,
      initialBackoffMs: 200,
      maxBackoffMs: 2000,
    });
    try {
      await core.createNamespacedConfigMap({
        namespace: 'default',
        body: { metadata: { name: 'survivor' } },
      });
      await core.createNamespacedConfigMap({
        namespace: 'default',
        body: { metadata: { name: 'doomed' } },
      });
      await informer.start();
      expect(informer.get('doomed', 'default')).toBeDefined();

      await cp.stopComponent('kube-apiserver');
      await cp.startComponent('kube-apiserver');
      // Changed right after the restart, while the informer may still be backing off.
      await core.deleteNamespacedConfigMap({ namespace: 'default', name: 'doomed' });
      await core.createNamespacedConfigMap({
        namespace: 'default',
        body: { metadata: { name: 'newcomer' } },
      });

      await until(
        'object created after the restart',
        () => informer.get('newcomer', 'default'),
        20_000,
      );
      await until(
        'object deleted after the restart to leave the cache',
        () => informer.get('doomed', 'default') === undefined,
        20_000,
      );
      expect(informer.get('survivor', 'default')).toBeDefined();
      const restarts =
        (await registry.getSingleMetric('kova_informer_restarts_total')?.get())?.values[0]?.value ??
        0;
      expect(restarts).toBeGreaterThanOrEqual(1);
    } finally {
      await informer.stop();
      await cp.stop();
    }
  });
});
