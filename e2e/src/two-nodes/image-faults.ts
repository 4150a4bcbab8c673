// Image downloads that go wrong: a node whose image cache is full, a transfer cut midway, a
// checksum that does not match. Each gives the Instance a fault that says what happened; node
// problems reschedule to the other node, an image problem ends in Error; no partial file stays.
// The images come from a server on the lab's gateway; each node's cache is its own.
import { describe, expect, it } from '@jest/globals';
import { A, B, filesIn, lab } from './context.js';

const cacheOf = (node: string) => `${lab().cluster.stateDirOf(node)}/images`;
const partials = async (node: string) =>
  (await filesIn(node, cacheOf(node))).filter((f) => f.includes('.partial.'));

export function imageFaults(): void {
  describe('image faults', () => {
    it('a full image cache on one node: NodeDiskFull there, the Instance boots on the other', async () => {
      // A's cache is a 1 MiB tmpfs, mounted in A's own mount namespace: the 2 MiB image cannot
      // fit there, and B does not see it. B has memory reserved, so the scheduler tries A first.
      const { vms, hypervisors, images, lab: nodes } = lab();
      await nodes.exec(A, ['mkdir', '-p', cacheOf(A)]);
      await nodes.exec(A, ['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', cacheOf(A)]);
      await hypervisors.setSpec(B, { reservedMemoryMiB: 4096 });
      try {
        const image = await images.add('big-image', 'serve');
        await vms.create('full', { image: image.name });
        const inst = await vms.phase('full', 'Active');
        expect(inst.status?.nodeName).toBe(B);
        expect(inst.status?.attempts).toEqual([
          expect.objectContaining({ node: A, reason: 'NodeDiskFull' }),
        ]);
        expect(inst.status?.attempts?.[0]?.message).toContain('no space left');
        expect(await filesIn(A, cacheOf(A))).toEqual([]);
        expect(await filesIn(B, cacheOf(B))).toContain(`${image.sha256}.img`);
        await vms.deleteAndWait('full');
      } finally {
        await nodes.exec(A, ['umount', cacheOf(A)]);
        await hypervisors.setSpec(B, { reservedMemoryMiB: null });
      }
    });

    it('a transfer cut midway: ImageDownloadFailed, no partial file, and the retry elsewhere boots', async () => {
      const { vms, images } = lab();
      const image = await images.add('cut-image', 'cut-first');
      await vms.create('cut', { image: image.name });
      const inst = await vms.phase('cut', 'Active');
      const failed = inst.status?.attempts?.[0];
      expect(failed).toEqual(expect.objectContaining({ reason: 'ImageDownloadFailed' }));
      const [bad, good] = [failed?.node as string, inst.status?.nodeName as string];
      expect(good).not.toBe(bad);
      expect(image.requests).toBe(2);
      expect(await partials(bad)).toEqual([]);
      expect(await filesIn(bad, cacheOf(bad))).not.toContain(`${image.sha256}.img`);
      expect(await filesIn(good, cacheOf(good))).toContain(`${image.sha256}.img`);
      await vms.deleteAndWait('cut');
    });

    it('a checksum that does not match: Error with ChecksumMismatch at once, nothing cached anywhere', async () => {
      const { vms, images } = lab();
      const wrong = 'ab'.repeat(32);
      const image = await images.add('wrong-sum', 'serve', { sha256: wrong });
      await vms.create('mismatch', { image: image.name });
      const inst = await vms.phase('mismatch', 'Error');
      expect(inst.status?.fault).toEqual(
        expect.objectContaining({ reason: 'ChecksumMismatch', retryable: false }),
      );
      expect(inst.status?.fault?.message).toContain(image.sha256);
      expect(image.requests).toBe(1);
      for (const node of [A, B]) {
        expect(await partials(node)).toEqual([]);
        expect(await filesIn(node, cacheOf(node))).not.toContain(`${wrong}.img`);
      }
      await vms.deleteAndWait('mismatch');
    });
  });
}
