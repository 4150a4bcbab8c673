// What qemu-img says about a disk image, and whether kova may hand it to a guest. Images come
// from users: a qcow2 header can name a backing file or an external data file (/dev/sda, another
// Instance's disk, the agent's token) that QEMU would then open for the guest — the class of
// Nova's OSSA-2024-001 / CVE-2024-32498. qemu-img info without --backing-chain reads the header
// only; it opens neither of those files.
import { BuildFault } from '../errors.js';
import { run } from '../host/exec.js';

interface ImageInfo {
  format: string;
  'backing-filename'?: string;
  'full-backing-filename'?: string;
  'format-specific'?: { type?: string; data?: { 'data-file'?: string } };
}

/**
 * qemu-img's view of a file. `shared` (-U) reads an image a running QEMU holds locked, which
 * only the garbage collector needs: it looks at overlays of live domains.
 */
export async function imageInfo(path: string, shared = false): Promise<ImageInfo> {
  const info = ['qemu-img', 'info', '--output=json', ...(shared ? ['-U'] : []), path];
  const out = await run('prlimit', [...QEMU_IMG_LIMITS, '--', ...info]);
  return JSON.parse(out) as ImageInfo;
}

/**
 * A crafted header can make qemu-img's parser eat memory or time; as Nova does, it runs with
 * 1 GiB of address space and 30 s of CPU at most.
 */
const QEMU_IMG_LIMITS = ['--as=1073741824', '--cpu=30'];

/**
 * Refuses, as a fault no other node could fix, an image whose detected format is not the one its
 * Image declares (raw declared but qcow2 inside would let the header speak after all), or that
 * refers to any file outside itself.
 */
export async function checkImageSafe(
  path: string,
  declared: string,
  imageName: string,
): Promise<void> {
  const info = await imageInfo(path).catch((err) => {
    throw unsafe(`qemu-img cannot read Image ${imageName}: ${(err as Error).message}`);
  });
  if (info.format !== declared)
    throw unsafe(
      `Image ${imageName} declares format ${declared} but its content is ${info.format}; set spec.format to ${info.format} if that is what you uploaded`,
    );
  const backing = info['full-backing-filename'] ?? info['backing-filename'];
  if (backing)
    throw unsafe(
      `Image ${imageName} refers to backing file ${backing}; upload a self-contained image (qemu-img convert -O ${declared} in.img out.img)`,
    );
  const dataFile = info['format-specific']?.data?.['data-file'];
  if (dataFile)
    throw unsafe(
      `Image ${imageName} keeps its data in external file ${dataFile}; upload a self-contained image (qemu-img convert -O ${declared} in.img out.img)`,
    );
}

function unsafe(message: string): BuildFault {
  return new BuildFault('UnsafeImage', message, false);
}
