// Block devices of an Instance: a copy-on-write qcow2 overlay on the cached base, grown to the
// Flavor's root disk, plus the Flavor's ephemeral and swap disks. Each is made under a
// temporary name and renamed, so a crash never leaves a half-made disk that looks finished.
import type { IFlavor } from '@kova/crds';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { BuildFault } from '../errors.js';
import { run } from '../host/exec.js';
import type { StatePaths } from '../host/paths.js';

export interface Disks {
  root: string;
  ephemeral?: string;
  swap?: string;
}

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

async function create(path: string, args: string[]): Promise<void> {
  if (await exists(path)) return;
  const tmp = `${path}.tmp`;
  try {
    await run('qemu-img', ['create', '-q', ...args.map((a) => (a === '@OUT' ? tmp : a))]);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw new BuildFault(
      'DiskCreateFailed',
      `could not create ${path}: ${(err as Error).message}`,
      true,
      { cause: err },
    );
  }
}

export async function createDisks(
  paths: StatePaths,
  uid: string,
  base: string,
  baseFormat: string,
  flavor: IFlavor['spec'],
): Promise<Disks> {
  await mkdir(paths.instanceDir(uid), { recursive: true, mode: 0o755 });
  const root = paths.instanceFile(uid, 'root.qcow2');
  await create(root, [
    '-f',
    'qcow2',
    '-F',
    baseFormat,
    '-b',
    base,
    '@OUT',
    `${flavor.rootDiskGiB}G`,
  ]);
  const disks: Disks = { root };
  if ((flavor.ephemeralGiB ?? 0) > 0) {
    disks.ephemeral = paths.instanceFile(uid, 'ephemeral.qcow2');
    await create(disks.ephemeral, ['-f', 'qcow2', '@OUT', `${flavor.ephemeralGiB}G`]);
  }
  if ((flavor.swapMiB ?? 0) > 0) {
    disks.swap = paths.instanceFile(uid, 'swap.qcow2');
    await create(disks.swap, ['-f', 'qcow2', '@OUT', `${flavor.swapMiB}M`]);
  }
  return disks;
}

export async function removeInstanceFiles(paths: StatePaths, uid: string): Promise<void> {
  await rm(paths.instanceDir(uid), { recursive: true, force: true });
}
