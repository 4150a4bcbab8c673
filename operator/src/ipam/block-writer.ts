// Writes IPBlocks, arbitrated by the API server: every write replaces the whole block and
// carries the resourceVersion it was computed from, so a write based on a stale block (another
// replica's, or our view behind) is refused with 409; the block is read again and the edits
// applied anew, where an address someone else took meanwhile is refused to its caller. Edits
// that arrive while a block's write is in flight wait and go together in the next write (a
// group commit): a burst of bindings costs a fraction of a write each.
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { apiStatus } from '@kova/controller-kit';
import { API_VERSION, GROUP, NETWORK_LABEL, PLURAL, VERSION, type IIPBlock } from '@kova/crds';
import { applyEdits, type BlockEdit, type BlockRef } from './blocks.js';

/** Where the writer reads the block as last known, and tells what it wrote or read. */
export interface BlockView {
  block(name: string): IIPBlock | undefined;
  observe(name: string, block: IIPBlock | undefined): void;
}

interface Waiting {
  edit: BlockEdit;
  resolve: (took: boolean) => void;
  reject: (err: unknown) => void;
}

/** Conflicts in a row before the edits fail (and their syncs retry later). */
const MAX_CONFLICTS = 10;
const api = { group: GROUP, version: VERSION, plural: PLURAL.IPBlock };

export class BlockWriter {
  private readonly custom: CustomObjectsApi;
  private readonly waiting = new Map<string, Waiting[]>();
  private readonly writing = new Set<string>();

  constructor(
    kc: KubeConfig,
    private readonly view: BlockView,
  ) {
    this.custom = kc.makeApiClient(CustomObjectsApi);
  }

  /** Applies the edit with the next write of its block; true once written (or already so). */
  edit(ref: BlockRef, edit: BlockEdit): Promise<boolean> {
    return new Promise((resolve, reject) => {
      const queue = this.waiting.get(ref.name) ?? [];
      queue.push({ edit, resolve, reject });
      this.waiting.set(ref.name, queue);
      if (!this.writing.has(ref.name)) void this.drain(ref);
    });
  }

  private async drain(ref: BlockRef): Promise<void> {
    this.writing.add(ref.name);
    try {
      for (let batch = this.take(ref.name); batch.length; batch = this.take(ref.name))
        await this.write(ref, batch);
    } finally {
      this.writing.delete(ref.name);
    }
  }

  private take(name: string): Waiting[] {
    const batch = this.waiting.get(name) ?? [];
    this.waiting.delete(name);
    return batch;
  }

  private async write(ref: BlockRef, batch: Waiting[]): Promise<void> {
    const edits = batch.map((w) => w.edit);
    for (let conflicts = 0; ; conflicts++) {
      const current = this.view.block(ref.name);
      const next = applyEdits(current?.spec.addresses ?? [], edits);
      try {
        if (next.changed) this.view.observe(ref.name, await this.put(ref, current, next.entries));
        batch.forEach((w, i) => w.resolve(next.results[i] as boolean));
        return;
      } catch (err) {
        const stale = apiStatus(err) === 409 || apiStatus(err) === 404;
        if (!stale || conflicts >= MAX_CONFLICTS) return fail(batch, err);
      }
      try {
        this.view.observe(ref.name, await this.read(ref.name));
      } catch (err) {
        return fail(batch, err);
      }
    }
  }

  /** Creates, replaces or (empty) deletes the block; undefined when it is gone. */
  private async put(
    ref: BlockRef,
    current: IIPBlock | undefined,
    addresses: NonNullable<IIPBlock['spec']['addresses']>,
  ): Promise<IIPBlock | undefined> {
    const { name, network, cidr } = ref;
    if (!addresses.length) {
      if (!current) return undefined;
      const resourceVersion = current.metadata?.resourceVersion;
      await this.custom.deleteClusterCustomObject({
        ...api,
        name,
        body: { preconditions: { resourceVersion } },
      });
      return undefined;
    }
    const body: IIPBlock = {
      apiVersion: API_VERSION,
      kind: 'IPBlock',
      metadata: {
        name,
        labels: { [NETWORK_LABEL]: network },
        ...(current ? { resourceVersion: current.metadata?.resourceVersion } : {}),
      },
      spec: { network, cidr, addresses },
    };
    return (await (current
      ? this.custom.replaceClusterCustomObject({ ...api, name, body })
      : this.custom.createClusterCustomObject({ ...api, body }))) as IIPBlock;
  }

  private async read(name: string): Promise<IIPBlock | undefined> {
    try {
      return (await this.custom.getClusterCustomObject({ ...api, name })) as IIPBlock;
    } catch (err) {
      if (apiStatus(err) === 404) return undefined;
      throw err;
    }
  }
}

function fail(batch: Waiting[], err: unknown): void {
  for (const w of batch) w.reject(err);
}
