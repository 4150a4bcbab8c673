// Block devices of an Instance: a copy-on-write qcow2 overlay on the cached base, grown to the
// Flavor's root disk, plus the Flavor's ephemeral and swap disks. Each is made under a
// temporary name and renamed, so a crash never leaves a half-made disk that looks finished.
//
// Modes: a guest's disks and config drive (userData, keys) are for its QEMU alone. Files are
// 0600 root; libvirt's dynamic ownership hands them to the QEMU user while the domain runs and
// back after. The directory is 0711: the QEMU user must traverse it, and its group differs by
// distribution and lives on the host, not in the agent's container, so no one else may list or
// read, but anyone may pass through to a file whose mode lets them in (none does).
import type { IFlavor } from '@kova/crds';
import { chmod, mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { BuildFault } from '../errors.js';
import { run } from '../host/exec.js';
import type { StatePaths } from '../host/paths.js';
import { checkImageSafe } from './image-safety.js';

export const INSTANCE_DIR_MODE = 0o711;
export const INSTANCE_FILE_MODE = 0o600;

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
    await createPrivate(tmp);
    await run('qemu-img', ['create', '-q', ...args.map((a) => (a === '@OUT' ? tmp : a))]);
    await chmod(tmp, INSTANCE_FILE_MODE);
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

/**
 * Creates an empty file that is private from its first byte: the tools writing into it keep its
 * mode, and the chmod after them covers one that would not.
 */
export async function createPrivate(path: string): Promise<void> {
  await writeFile(path, '', { mode: INSTANCE_FILE_MODE });
  await chmod(path, INSTANCE_FILE_MODE);
}

/** Makes the Instance's directory, tightening one an older agent made 0755. */
export async function ensureInstanceDir(paths: StatePaths, uid: string): Promise<string> {
  const dir = paths.instanceDir(uid);
  await mkdir(dir, { recursive: true, mode: INSTANCE_DIR_MODE });
  await chmod(dir, INSTANCE_DIR_MODE);
  return dir;
}

export async function createDisks(
  paths: StatePaths,
  uid: string,
  base: string,
  baseFormat: string,
  flavor: IFlavor['spec'],
): Promise<Disks> {
  await ensureInstanceDir(paths, uid);
  const root = paths.instanceFile(uid, 'root.qcow2');
  // The cache checks what it fetches; this also covers bases cached before it did.
  if (!(await exists(root))) await checkImageSafe(base, baseFormat, base);
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
