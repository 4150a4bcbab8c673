// The node's image cache: one file per checksum, fetched once even when many Instances ask at
// once, streamed to a temporary file and checked against sha256 before it is renamed into
// place, so a partial or corrupt download is never used and never left behind. A disk image is
// untrusted input: it is inspected before it enters the cache (see image-safety.ts).
import type { IImage } from '@kova/crds';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BuildFault } from '../errors.js';
import type { StatePaths } from '../host/paths.js';
import { checkImageSafe } from './image-safety.js';

export interface CacheStats {
  hits: number;
  misses: number;
  bytesFetched: number;
}

export class ImageCache {
  private readonly inFlight = new Map<string, Promise<string>>();
  readonly stats: CacheStats = { hits: 0, misses: 0, bytesFetched: 0 };

  constructor(private readonly paths: StatePaths) {}

  /** Path of the verified base file for the Image, fetching it if this node lacks it. */
  async ensure(image: IImage): Promise<string> {
    const sha = image.spec.sha256;
    const target = this.paths.image(sha);
    if (await exists(target)) {
      this.stats.hits++;
      const now = new Date();
      await utimes(target, now, now);
      return target;
    }
    let pending = this.inFlight.get(sha);
    if (!pending) {
      this.stats.misses++;
      pending = this.fetch(image, target).finally(() => this.inFlight.delete(sha));
      this.inFlight.set(sha, pending);
    }
    return pending;
  }

  /** Cached bases, for the Hypervisor status. */
  async list(): Promise<{ sha256: string; sizeBytes: number }[]> {
    const files = await readdir(this.paths.images).catch(() => [] as string[]);
    const out = [];
    for (const f of files.filter((x) => /^[0-9a-f]{64}\.img$/.test(x))) {
      out.push({
        sha256: f.slice(0, 64),
        sizeBytes: (await stat(`${this.paths.images}/${f}`)).size,
      });
    }
    return out;
  }

  /** Removes bases not in `inUse` whose last use is older than ttlMs, and stray partial files. */
  async collect(inUse: Set<string>, ttlMs: number, now = Date.now()): Promise<string[]> {
    const removed: string[] = [];
    for (const f of await readdir(this.paths.images).catch(() => [] as string[])) {
      const path = `${this.paths.images}/${f}`;
      const sha = f.slice(0, 64);
      const partial = f.includes('.partial.') && !this.inFlight.has(sha);
      const stale =
        f.endsWith('.img') && !inUse.has(sha) && now - (await stat(path)).mtimeMs > ttlMs;
      if (partial || stale) {
        await rm(path, { force: true });
        removed.push(f);
      }
    }
    return removed;
  }

  private async fetch(image: IImage, target: string): Promise<string> {
    await mkdir(this.paths.images, { recursive: true, mode: 0o755 });
    const partial = `${target}.partial.${randomBytes(4).toString('hex')}`;
    const hash = createHash('sha256');
    let bytes = 0;
    try {
      const source = await openSource(image.spec.source);
      source.on('data', (chunk: Buffer) => {
        hash.update(chunk);
        bytes += chunk.length;
      });
      await pipeline(source, createWriteStream(partial, { mode: 0o644 }));
    } catch (err) {
      await rm(partial, { force: true });
      if (err instanceof BuildFault) throw err;
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') {
        throw new BuildFault(
          'NodeDiskFull',
          `no space left for Image ${image.metadata?.name} in this node's image cache (${this.paths.images})`,
          true,
          { cause: err },
        );
      }
      throw new BuildFault(
        'ImageDownloadFailed',
        `could not fetch Image ${image.metadata?.name} from ${image.spec.source}: ${(err as Error).message}`,
        true,
        { cause: err },
      );
    }
    const actual = hash.digest('hex');
    if (actual !== image.spec.sha256) {
      await rm(partial, { force: true });
      throw new BuildFault(
        'ChecksumMismatch',
        `Image ${image.metadata?.name} from ${image.spec.source} has sha256 ${actual}, not ${image.spec.sha256}; fix spec.sha256 or the source`,
        false,
      );
    }
    if (!isBootFile(image)) {
      await checkImageSafe(
        partial,
        image.spec.format ?? 'qcow2',
        image.metadata?.name ?? image.spec.sha256,
      ).catch(async (err) => {
        await rm(partial, { force: true });
        throw err;
      });
    }
    await rename(partial, target);
    this.stats.bytesFetched += bytes;
    return target;
  }
}

/**
 * A direct-boot kernel or initrd is fetched through the same cache with the Image's spec carrying
 * that file's source and checksum. QEMU loads it as plain bytes, never as a disk, so it has no
 * disk format to check. Should an Image name its disk as its kernel too, the disk is still
 * checked where the overlay is made (createDisks).
 */
function isBootFile(image: IImage): boolean {
  const { sha256, kernel, initrd } = image.spec;
  return kernel?.sha256 === sha256 || initrd?.sha256 === sha256;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

function openSource(source: string): Promise<Readable> {
  if (source.startsWith('/')) {
    return new Promise((resolve, reject) => {
      const s = createReadStream(source);
      s.once('open', () => resolve(s));
      s.once('error', (err) =>
        reject(
          new BuildFault(
            'ImageDownloadFailed',
            `cannot read node-local image ${source}: ${err.message}`,
            true,
          ),
        ),
      );
    });
  }
  const url = URL.canParse(source) ? new URL(source) : undefined;
  if (url?.protocol !== 'http:' && url?.protocol !== 'https:') {
    return Promise.reject(
      new BuildFault(
        'InvalidImage',
        `image source ${source} is neither http(s) nor an absolute path`,
        false,
      ),
    );
  }
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(url, { timeout: 30_000 }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`HTTP ${res.statusCode}`));
        return;
      }
      resolve(res);
    });
    req.on('timeout', () => req.destroy(new Error('no response within 30 s')));
    req.on('error', reject);
    req.end();
  });
}
