// Removes what kova left on this node without an Instance to own it: domains whose kova
// metadata names an Instance that is gone or bound elsewhere (after a grace period, so a
// domain is never removed while its Instance is merely not yet in the cache), instance
// directories without a domain or an Instance (after the same grace), and image bases nobody
// used for a while.
import type { Logger } from '@kova/controller-kit';
import { readdir, stat } from 'node:fs/promises';
import type { AgentConfig } from './config.js';
import { ownerOf } from './domain/xml.js';
import type { LibvirtSession } from './host/libvirt-session.js';
import type { StatePaths } from './host/paths.js';
import { removeDomain, type Instance } from './instance-reconciler.js';
import { DomainState, isNoDomain, type Domain } from './libvirt/index.js';
import type { ImageCache } from './steps/image-cache.js';

export class GarbageCollector {
  private readonly orphanSince = new Map<string, number>();

  constructor(
    private readonly config: AgentConfig,
    private readonly session: LibvirtSession,
    private readonly paths: StatePaths,
    private readonly cache: ImageCache,
    private readonly instancesHere: () => readonly Instance[],
    private readonly imageShaOf: (image: string) => string | undefined,
    private readonly logger: Logger,
  ) {}

  async collect(now = Date.now()): Promise<string[]> {
    const live = new Set(this.instancesHere().map((i) => i.metadata.uid));
    const removed: string[] = [];
    const conn = await this.session.conn();
    const kovaDomains = new Set<string>();
    for (const dom of await conn.listAllDomains()) {
      const owner = await ownerOfDomain(dom);
      if (!owner || owner.node !== this.config.nodeName) continue;
      kovaDomains.add(owner.uid);
      if (live.has(owner.uid)) {
        this.orphanSince.delete(owner.uid);
        continue;
      }
      const since = this.orphanSince.get(owner.uid) ?? now;
      this.orphanSince.set(owner.uid, since);
      if (now - since < this.config.orphanGraceMs) continue;
      await removeDomain({ session: this.session, paths: this.paths }, owner.uid, (d: Domain) =>
        d.destroy(),
      );
      this.orphanSince.delete(owner.uid);
      removed.push(`domain ${dom.name}`);
      this.logger.info('removed orphaned domain', {
        domain: dom.name,
        instance: `${owner.namespace}/${owner.name}`,
        uid: owner.uid,
      });
    }
    const dirs = await readdir(this.paths.instances).catch(() => [] as string[]);
    // Read after the listing: an Instance that arrived meanwhile has its directory listed too.
    const liveNow = new Set(this.instancesHere().map((i) => i.metadata.uid));
    for (const uid of dirs) {
      if (liveNow.has(uid) || kovaDomains.has(uid) || (await this.youngerThanGrace(uid, now)))
        continue;
      await removeDomain(
        { session: this.session, paths: this.paths },
        uid,
        async () => undefined,
      ).catch(() => undefined);
      removed.push(`files of ${uid}`);
    }
    const inUse = new Set(
      this.instancesHere()
        .map((i) => this.imageShaOf(i.spec.image))
        .filter((s): s is string => !!s),
    );
    for (const f of await this.cache.collect(inUse, this.config.imageTtlMs, now))
      removed.push(`image ${f}`);
    return removed;
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

/** Undefined for domains not kova's, and for those removed since they were listed. */
async function ownerOfDomain(dom: Domain): Promise<ReturnType<typeof ownerOf>> {
  try {
    return ownerOf(await dom.getXMLDesc());
  } catch (err) {
    if (isNoDomain(err)) return undefined;
    throw err;
  }
}

export const stateName = (s: number) =>
  Object.entries(DomainState)
    .find(([, v]) => v === s)?.[0]
    .toLowerCase() ?? 'unknown';
