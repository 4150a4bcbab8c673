// Removes what kova left on this node without an Instance to own it: domains whose kova
// metadata names an Instance that is gone or bound elsewhere (after a grace period, so a
// domain is never removed while its Instance is merely not yet in the cache), instance
// directories without a domain or an Instance (after the same grace), and image bases nobody
// used for a while. A base is in use while anything on the node may still open it: any
// domain's disks (through their backing chains), kernel or initrd, any overlay in an instance
// directory, or the current or recorded Image of an Instance here (its overlay may not exist
// yet). An Image's checksum changing or the Image being deleted does not free a base under live
// disks.
import type { Logger } from '@kova/controller-kit';
import type { InstanceObject } from '@kova/crds';
import { readdir, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { AgentConfig } from './config.js';
import { filesOf, ownerOf } from './domain/xml.js';
import type { LibvirtSession } from './host/libvirt-session.js';
import type { StatePaths } from './host/paths.js';
import { removeDomain } from './instance-reconciler.js';
import { DomainState, isNoDomain, type Domain } from './libvirt/index.js';
import type { ImageCache } from './steps/image-cache.js';
import { imageInfo } from './steps/image-safety.js';

/** Deeper chains than this are not kova's (an overlay on a flat base is two). */
const MAX_CHAIN = 16;

export class GarbageCollector {
  private readonly orphanSince = new Map<string, number>();

  constructor(
    private readonly config: AgentConfig,
    private readonly session: LibvirtSession,
    private readonly paths: StatePaths,
    private readonly cache: ImageCache,
    private readonly instancesHere: () => readonly InstanceObject[],
    /** The checksums an Image's files have: its disk, kernel and initrd. */
    private readonly imageShasOf: (image: string) => string[],
    private readonly logger: Logger,
  ) {}

  async collect(now = Date.now()): Promise<string[]> {
    const live = new Set(this.instancesHere().map((i) => i.metadata.uid));
    const removed: string[] = [];
    const conn = await this.session.conn();
    const kovaDomains = new Set<string>();
    const domainFiles: string[] = [];
    for (const dom of await conn.listAllDomains()) {
      const xml = await xmlOf(dom);
      if (xml === undefined) continue;
      const owner = ownerOf(xml);
      if (owner?.node === this.config.nodeName) {
        kovaDomains.add(owner.uid);
        if (this.orphanExpired(owner.uid, live, now)) {
          await removeDomain({ session: this.session, paths: this.paths }, owner.uid, (d) =>
            d.destroy(),
          );
          this.orphanSince.delete(owner.uid);
          removed.push(`domain ${dom.name}`);
          this.logger.info('removed orphaned domain', {
            domain: dom.name,
            instance: `${owner.namespace}/${owner.name}`,
            uid: owner.uid,
          });
          continue;
        }
      }
      // Any domain kept, kova's or not, keeps the files it opens.
      domainFiles.push(...filesOf(xml));
    }
    const dirs = await readdir(this.paths.instances).catch(() => [] as string[]);
    // Read after the listing: an Instance that arrived meanwhile has its directory listed too.
    const liveNow = new Set(this.instancesHere().map((i) => i.metadata.uid));
    for (const uid of dirs) {
      if (liveNow.has(uid) || kovaDomains.has(uid) || (await this.youngerThanGrace(uid, now)))
        continue;
      const gone = await removeDomain(
        { session: this.session, paths: this.paths },
        uid,
        async () => undefined,
      ).then(
        () => true,
        (err: Error) => {
          this.logger.warn('could not remove an orphaned instance directory', { uid, error: err });
          return false;
        },
      );
      if (gone) removed.push(`files of ${uid}`);
    }
    const inUse = await this.basesInUse(domainFiles);
    for (const f of await this.cache.collect(inUse, this.config.imageTtlMs, now))
      removed.push(`image ${f}`);
    return removed;
  }

  /** Whether a kova domain has had no Instance here for the whole grace period. */
  private orphanExpired(uid: string, live: Set<string>, now: number): boolean {
    if (live.has(uid)) {
      this.orphanSince.delete(uid);
      return false;
    }
    const since = this.orphanSince.get(uid) ?? now;
    this.orphanSince.set(uid, since);
    return now - since >= this.config.orphanGraceMs;
  }

  /** Checksums of the cached bases something on this node may still open. */
  private async basesInUse(domainFiles: string[]): Promise<Set<string>> {
    const files = new Set(domainFiles);
    for (const uid of await readdir(this.paths.instances).catch(() => [] as string[])) {
      const dir = join(this.paths.instances, uid);
      for (const f of await readdir(dir).catch(() => [] as string[]))
        if (f.endsWith('.qcow2')) files.add(join(dir, f));
    }
    const referenced = new Set<string>();
    for (const f of files) for (const p of await backingChain(f)) referenced.add(resolve(p));
    // The content an Instance was bound to (status.image) too: its overlay may not exist yet.
    const recorded = (i: InstanceObject) => (i.status?.image ? [i.status.image.sha256] : []);
    const inUse = new Set(
      this.instancesHere().flatMap((i) => [...this.imageShasOf(i.spec.image), ...recorded(i)]),
    );
    for (const p of referenced) {
      const name = basename(p);
      if (dirname(p) === this.paths.images && /^[0-9a-f]{64}\.img$/.test(name))
        inUse.add(name.slice(0, 64));
    }
    return inUse;
  }

  private async youngerThanGrace(uid: string, now: number): Promise<boolean> {
    const made = await stat(`${this.paths.instances}/${uid}`).then(
      (s) => s.mtimeMs,
      () => 0,
    );
    return now - made < this.config.orphanGraceMs;
  }

  /** Counts kova's domains by power state, for the kova_domains gauge. */
  async domainStates(): Promise<Map<number, number>> {
    const counts = new Map<number, number>();
    const conn = await this.session.conn();
    for (const dom of await conn.listAllDomains()) {
      const state = await dom.getState().then(
        (s) => s.state,
        (err) => {
          if (isNoDomain(err)) return undefined;
          throw err;
        },
      );
      if (state !== undefined) counts.set(state, (counts.get(state) ?? 0) + 1);
    }
    return counts;
  }
}

/** Undefined for a domain removed since it was listed. */
async function xmlOf(dom: Domain): Promise<string | undefined> {
  try {
    return await dom.getXMLDesc();
  } catch (err) {
    if (isNoDomain(err)) return undefined;
    throw err;
  }
}

/**
 * The file and every file under it in its backing chain. qemu-img reads one header at a time
 * (-U: a running QEMU holds the lock), so a base already gone ends the chain instead of failing
 * it. A file that exists but cannot be read fails the round: better keep every base than guess.
 */
async function backingChain(file: string): Promise<string[]> {
  const chain: string[] = [];
  let next: string | undefined = file;
  while (next && chain.length < MAX_CHAIN) {
    const path: string = next;
    const info = await imageInfo(path, true).catch(async (err) => {
      if (await exists(path)) throw err;
      return undefined;
    });
    if (!info) break;
    chain.push(path);
    next = info['full-backing-filename'];
  }
  return chain;
}

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

export const stateName = (s: number) =>
  Object.entries(DomainState)
    .find(([, v]) => v === s)?.[0]
    .toLowerCase() ?? 'unknown';
