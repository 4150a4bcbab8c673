// Rescheduling on real domains: node kova-b is misconfigured the way a broken hypervisor can be
// — QEMU (which runs as libvirt's unprivileged user) cannot reach its instance directory — so
// every domain start there fails. The scheduler prefers kova-b (kova-a has memory reserved),
// the build fails, kova-b removes what it made, and the Instance boots on kova-a.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { startLocalCluster, type Cluster } from './cluster.js';
import { Hypervisors } from './hypervisors.js';
import { Instances } from './instances.js';

let cluster: Cluster;
let vms: Instances;

beforeAll(async () => {
  cluster = await startLocalCluster({
    suite: 'reschedule',
    agents: [{ node: 'kova-a' }, { node: 'kova-b' }],
    agentEnv: { KOVA_SHUTDOWN_TIMEOUT_SECONDS: '2' },
  });
  vms = new Instances(cluster);
  const hypervisors = new Hypervisors(cluster);
  await hypervisors.ready();
  chmodSync(join(cluster.stateDirOf('kova-b'), 'instances'), 0o700);
  await hypervisors.setSpec('kova-a', { reservedMemoryMiB: 4096 });
}, 300_000);

afterAll(async () => {
  await cluster?.stop();
});

describe('a build that fails on one hypervisor', () => {
  it('is rescheduled to the other and boots there; the failed node keeps nothing of it', async () => {
    await vms.create('moved');
    const inst = await vms.phase('moved', 'Active');
    expect(inst.status?.nodeName).toBe('kova-a');
    expect(inst.status?.attempts).toEqual([
      expect.objectContaining({ node: 'kova-b', reason: 'DomainStartFailed' }),
    ]);
    expect(inst.status?.attempts?.[0]?.message).toMatch(/Permission denied/i);
    expect(inst.status?.fault).toBeUndefined();
    expect(await vms.domainOwner('kova-a', inst)).toBe('kova-a');
    expect(await vms.hasFiles('kova-b', inst)).toBe(false);
    expect(await vms.httpAnswer(inst)).toBe(inst.metadata.uid);
    const allocations = await vms.allocationsOf(inst.metadata.uid);
    expect(allocations.map((a) => a.spec.ip)).toEqual([vms.ipOf(inst)]);
  });
});
