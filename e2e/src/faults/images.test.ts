// Image downloads that go wrong: a node whose image cache is full, a transfer cut midway, a
// checksum that does not match. Each gives the Instance a fault that says what happened; node
// problems reschedule to the other node, an image problem ends in Error; no partial file stays.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import { startLocalCluster, type LocalCluster } from '../cluster.js';
import { Hypervisors } from '../hypervisors.js';
import { ImageServer } from '../image-server.js';
import { Instances } from '../instances.js';

let cluster: LocalCluster;
let vms: Instances;
let hypervisors: Hypervisors;
let images: ImageServer;
let fullCache: string | undefined;

beforeAll(async () => {
  cluster = await startLocalCluster({
    suite: 'image-faults',
    agents: [{ node: 'kova-a' }, { node: 'kova-b' }],
    agentEnv: { KOVA_RESYNC_SECONDS: '3', KOVA_SHUTDOWN_TIMEOUT_SECONDS: '2' },
  });
  vms = new Instances(cluster);
  hypervisors = new Hypervisors(cluster);
  await hypervisors.ready();
  images = new ImageServer(cluster);
  await images.start();
}, 300_000);

afterAll(async () => {
  if (fullCache) execFileSync('umount', [fullCache]);
  await images?.stop();
  await cluster?.stop();
});

const cacheOf = (node: string) => `${cluster.stateDirOf(node)}/images`;
const partials = (node: string) =>
  readdirSync(cacheOf(node)).filter((f) => f.includes('.partial.'));

describe('image faults', () => {
  it('a full image cache on one node: NodeDiskFull there, the Instance boots on the other', async () => {
    // kova-a's cache is a 1 MiB tmpfs: the 2 MiB image cannot fit. kova-b has memory reserved,
    // so the scheduler tries kova-a first.
    fullCache = cacheOf('kova-a');
    mkdirSync(fullCache, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', fullCache]);
    await hypervisors.setSpec('kova-b', { reservedMemoryMiB: 4096 });
    const image = await images.add('big-image', 'serve');
    await vms.create('full', { image: image.name });
    const inst = await vms.phase('full', 'Active');
    expect(inst.status?.nodeName).toBe('kova-b');
    expect(inst.status?.attempts).toEqual([
      expect.objectContaining({ node: 'kova-a', reason: 'NodeDiskFull' }),
    ]);
    expect(inst.status?.attempts?.[0]?.message).toContain('no space left');
    expect(readdirSync(fullCache)).toEqual([]);
    execFileSync('umount', [fullCache]);
    fullCache = undefined;
    await hypervisors.setSpec('kova-b', { reservedMemoryMiB: null });
    await vms.deleteAndWait('full');
  });

  it('a transfer cut midway: ImageDownloadFailed, no partial file, and the retry elsewhere boots', async () => {
    const image = await images.add('cut-image', 'cut-first');
    await vms.create('cut', { image: image.name });
    const inst = await vms.phase('cut', 'Active');
    const failed = inst.status?.attempts?.[0];
    expect(failed).toEqual(expect.objectContaining({ reason: 'ImageDownloadFailed' }));
    expect(inst.status?.nodeName).not.toBe(failed?.node);
    expect(image.requests).toBe(2);
    expect(partials(failed?.node as string)).toEqual([]);
    expect(readdirSync(cacheOf(failed?.node as string))).not.toContain(`${image.sha256}.img`);
    expect(readdirSync(cacheOf(inst.status?.nodeName as string))).toContain(`${image.sha256}.img`);
    await vms.deleteAndWait('cut');
  });

  it('a checksum that does not match: Error with ChecksumMismatch at once, nothing cached anywhere', async () => {
    const wrong = 'ab'.repeat(32);
    const image = await images.add('wrong-sum', 'serve', { sha256: wrong });
    await vms.create('mismatch', { image: image.name });
    const inst = await vms.phase('mismatch', 'Error');
    expect(inst.status?.fault).toEqual(
      expect.objectContaining({ reason: 'ChecksumMismatch', retryable: false }),
    );
    expect(inst.status?.fault?.message).toContain(image.sha256);
    expect(image.requests).toBe(1);
    for (const node of cluster.nodes) {
      expect(partials(node)).toEqual([]);
      expect(readdirSync(cacheOf(node))).not.toContain(`${wrong}.img`);
    }
    await vms.deleteAndWait('mismatch');
  });
});
