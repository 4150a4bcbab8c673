// Rescheduling on real guests: node B is misconfigured the way a broken hypervisor can be —
// QEMU (which runs as libvirt's unprivileged user) cannot reach B's own instance directory —
// so every domain start there fails, and only there: A's state dir is another. The scheduler
// prefers B (A has memory reserved), the build fails, B removes what it made, and the
// Instance boots on A.
import { describe, expect, it } from '@jest/globals';
import { chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { A, B, expectGuestOnlyOn, lab } from './context.js';

export function reschedule(): void {
  describe('a build that fails on one hypervisor', () => {
    it('is rescheduled to the other and boots there; the failed node keeps nothing of it', async () => {
      const { cluster, vms, hypervisors } = lab();
      const brokenDir = join(cluster.stateDirOf(B), 'instances');
      await chmod(brokenDir, 0o700);
      await hypervisors.setSpec(A, { reservedMemoryMiB: 4096 });
      try {
        await vms.create('moved');
        const inst = await vms.phase('moved', 'Active');
        expect(inst.status?.nodeName).toBe(A);
        expect(inst.status?.attempts).toEqual([
          expect.objectContaining({ node: B, reason: 'DomainStartFailed' }),
        ]);
        expect(inst.status?.attempts?.[0]?.message).toMatch(/Permission denied/i);
        expect(inst.status?.fault).toBeUndefined();
        await expectGuestOnlyOn(inst);
        const allocations = await vms.allocationsOf(inst.metadata.uid);
        expect(allocations.map((a) => a.ip)).toEqual([vms.ipOf(inst)]);
        await vms.deleteAndWait('moved');
      } finally {
        await chmod(brokenDir, 0o755);
        await hypervisors.setSpec(A, { reservedMemoryMiB: null });
      }
    });
  });
}
