// Two hypervisors, real guests: the scheduler spreads Instances across them, a server group's
// anti-affinity holds on real domains (and waits for room rather than breaking it), and each
// domain belongs to the agent of the node it was bound to. Locally the two nodes are two
// agents with their own state dirs on this machine's libvirtd; on a given cluster, its nodes.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { ConditionType, GROUP, VERSION } from '@kova/crds';
import { until } from '@kova/hack';
import { startCluster, type Cluster } from './cluster.js';
import { Hypervisors } from './hypervisors.js';
import { Instances, type Instance } from './instances.js';

let cluster: Cluster;
let vms: Instances;

beforeAll(async () => {
  cluster = await startCluster({
    suite: 'two-nodes',
    agents: [{ node: 'kova-a' }, { node: 'kova-b' }],
    agentEnv: { KOVA_SHUTDOWN_TIMEOUT_SECONDS: '2', KOVA_RESYNC_SECONDS: '5' },
  });
  vms = new Instances(cluster);
  await new Hypervisors(cluster).ready();
}, 300_000);

afterAll(async () => {
  await cluster?.stop();
});

/** Checks a guest really runs on its node: the owning agent's domain, files and HTTP answer. */
async function expectGuestOn(inst: Instance): Promise<void> {
  const node = inst.status?.nodeName as string;
  expect(await vms.domainState(node, inst)).toBe('running');
  expect(await vms.domainOwner(node, inst)).toBe(node);
  expect(await vms.hasFiles(node, inst)).toBe(true);
  for (const other of cluster.nodes.filter((n) => n !== node))
    expect(await vms.hasFiles(other, inst)).toBe(false);
  expect(await vms.httpAnswer(inst)).toBe(inst.metadata.uid);
}

describe('two hypervisors', () => {
  it('spreads Instances created together across both nodes', async () => {
    await Promise.all(['spread-1', 'spread-2'].map((n) => vms.create(n)));
    const [a, b] = await Promise.all(['spread-1', 'spread-2'].map((n) => vms.phase(n, 'Active')));
    expect(new Set([a?.status?.nodeName, b?.status?.nodeName]).size).toBe(2);
    for (const inst of [a, b]) await expectGuestOn(inst as Instance);
  });

  it('keeps anti-affinity members on different nodes and holds the extra one until a node frees up', async () => {
    await cluster.api.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: 'servergroups',
      namespace: cluster.namespace,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'ServerGroup',
        metadata: { name: 'web' },
        spec: { policy: 'anti-affinity', maxPerNode: 1 },
      },
    });
    for (const n of ['web-1', 'web-2', 'web-3']) await vms.create(n, { serverGroup: 'web' });
    const placed = await until(
      'two members Active and one refused',
      async () => {
        const members = (await vms.list()).filter((i) => i.spec.serverGroup === 'web');
        const active = members.filter((i) => i.status?.phase === 'Active');
        const waiting = members.filter(
          (i) => vms.condition(i, ConditionType.Scheduled)?.reason === 'NoValidHost',
        );
        return (
          active.length === 2 && waiting.length === 1 && { active, waiting: waiting[0] as Instance }
        );
      },
      90_000,
      200,
    );
    expect(new Set(placed.active.map((i) => i.status?.nodeName)).size).toBe(2);
    expect(placed.waiting.status?.phase).toBe('Scheduling');
    expect(vms.condition(placed.waiting, ConditionType.Scheduled)?.message).toBe(
      '0/2 hypervisors: 2 server group anti-affinity',
    );
    for (const inst of placed.active) await expectGuestOn(inst);

    const freed = placed.active[0] as Instance;
    await vms.deleteAndWait(freed.metadata.name);
    const late = await vms.phase(placed.waiting.metadata.name, 'Active');
    expect(late.status?.nodeName).toBe(freed.status?.nodeName);
    await expectGuestOn(late);
  });
});
