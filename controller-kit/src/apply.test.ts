import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { Applier } from './apply.js';
import { apiStatus } from './errors.js';
import { loadKubeConfig } from './kubeconfig.js';
import { createNamespace, deleteNamespace } from './test-support.js';

type ServerGroup = {
  metadata: { managedFields?: { manager?: string; subresource?: string; fieldsV1?: object }[] };
  spec: { policy: string };
  status?: Record<string, unknown>;
};

describe('Applier (server-side apply)', () => {
  let kc: KubeConfig;
  let ns: string;
  const ref = (name: string) => ({
    apiVersion: 'compute.kova.dev/v1alpha1',
    kind: 'ServerGroup',
    plural: 'servergroups',
    name,
    namespace: ns,
  });
  const group = (name: string, policy: string) => ({
    apiVersion: 'compute.kova.dev/v1alpha1',
    kind: 'ServerGroup',
    metadata: { name, namespace: ns },
    spec: { policy },
  });

  beforeAll(async () => {
    kc = loadKubeConfig();
    ns = await createNamespace(kc, 'apply');
  });
  afterAll(() => deleteNamespace(kc, ns));

  it('creates an object and writes its status under the named field manager, leaving other fields alone', async () => {
    const user = new Applier(kc, 'test-user');
    const operator = new Applier(kc, 'kova-operator');
    await user.apply(group('g1', 'anti-affinity'), 'servergroups');
    await operator.applyStatus(ref('g1'), {
      memberCount: 2,
      members: [
        { instance: 'a', node: 'n1' },
        { instance: 'b', node: 'n2' },
      ],
    });
    const agent = new Applier(kc, 'other-writer');
    // A second manager's status write does not erase the operator's fields it did not send.
    await agent.applyStatus(ref('g1'), {
      members: [
        { instance: 'a', node: 'n1' },
        { instance: 'b', node: 'n2' },
      ],
    });

    const stored = (await kc.makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
      group: 'compute.kova.dev',
      version: 'v1alpha1',
      plural: 'servergroups',
      namespace: ns,
      name: 'g1',
    })) as ServerGroup;
    expect(stored.spec.policy).toBe('anti-affinity');
    expect(stored.status?.memberCount).toBe(2);
    const managers = stored.metadata.managedFields?.map(
      (f) => `${f.manager}/${f.subresource ?? ''}`,
    );
    expect(managers).toEqual(expect.arrayContaining(['test-user/', 'kova-operator/status']));
  });

  it('never takes over a field another manager set to another value: a conflict (409)', async () => {
    const user = new Applier(kc, 'test-user');
    const operator = new Applier(kc, 'kova-operator');
    await user.apply(group('g3', 'anti-affinity'), 'servergroups');
    await operator.applyStatus(ref('g3'), { memberCount: 1 });
    const err = await new Applier(kc, 'other-writer')
      .applyStatus(ref('g3'), { memberCount: 5 })
      .catch((e) => e);
    expect(apiStatus(err)).toBe(409);
  });

  it('passes the API server rejection through with its status code', async () => {
    const user = new Applier(kc, 'test-user');
    const err = await user.apply(group('g2', 'nonsense'), 'servergroups').catch((e) => e);
    expect(apiStatus(err)).toBe(422);
  });
});
