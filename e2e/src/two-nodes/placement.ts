// Placement on real guests: the scheduler spreads Instances across both nodes, and a server
// group's anti-affinity holds (and waits for room rather than breaking it). Runs on the node
// lab, or on a given cluster's nodes.
import { describe, expect, it } from '@jest/globals';
import { ConditionType, GROUP, VERSION } from '@kova/crds';
import { until } from '@kova/hack';
import type { Instance } from '../instances.js';
import { expectGuestOnlyOn, two } from './context.js';

export function placement(): void {
  describe('two hypervisors', () => {
    it('spreads Instances created together across both nodes', async () => {
      const { vms } = two();
      await Promise.all(['spread-1', 'spread-2'].map((n) => vms.create(n)));
      const both = await Promise.all(['spread-1', 'spread-2'].map((n) => vms.phase(n, 'Active')));
      expect(new Set(both.map((i) => i.status?.nodeName)).size).toBe(2);
      for (const inst of both) await expectGuestOnlyOn(inst);
      for (const inst of both) await vms.deleteAndWait(inst.metadata.name);
    });

    it('keeps anti-affinity members on different nodes and holds the extra one until a node frees up', async () => {
      const { cluster, vms } = two();
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
            active.length === 2 &&
            waiting.length === 1 && { active, waiting: waiting[0] as Instance }
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
      for (const inst of placed.active) await expectGuestOnlyOn(inst);

      const freed = placed.active[0] as Instance;
      await vms.deleteAndWait(freed.metadata.name);
      const late = await vms.phase(placed.waiting.metadata.name, 'Active');
      expect(late.status?.nodeName).toBe(freed.status?.nodeName);
      await expectGuestOnlyOn(late);
      for (const inst of [placed.active[1] as Instance, late])
        await vms.deleteAndWait(inst.metadata.name);
    });
  });
}
