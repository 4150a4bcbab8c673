// A leader's chores beside the Instance queue, retried until they succeed and never in the
// queue's way: addresses whose Instance vanished while no operator led are freed, and
// addresses held for a node that was down when their Instance was deleted are freed once that
// node has been back long enough for its agent to have removed the VM.
import type { Logger } from '@kova/controller-kit';
import type { ClusterState } from '../cluster-state.js';
import type { OperatorConfig } from '../config.js';
import { HELD_FOR_NODE_LABEL, type AddressAllocator } from '../ipam/allocator.js';

const RETRY_MIN_MS = 1_000;
const RETRY_MAX_MS = 60_000;

export class Housekeeping {
  constructor(
    private readonly state: ClusterState,
    private readonly allocator: AddressAllocator,
    private readonly config: OperatorConfig,
    private readonly logger: Logger,
  ) {}

  /** Runs the chores every period until the signal aborts; a failed round retries sooner. */
  async run(signal: AbortSignal): Promise<void> {
    let delay = RETRY_MIN_MS;
    let orphansDone = false;
    while (!signal.aborted) {
      try {
        if (!orphansDone) await this.releaseOrphans();
        orphansDone = true;
        await this.releaseHeld();
        delay = this.config.heldAddressCheckMs;
      } catch (err) {
        this.logger.warn('housekeeping failed; retrying', {
          error: err as Error,
          retryInMs: delay,
        });
        delay = Math.min(delay * 2, RETRY_MAX_MS);
      }
      await sleep(delay, signal);
    }
  }

  /** Addresses whose Instance no longer exists (deleted while no operator led) are freed. */
  private async releaseOrphans(): Promise<void> {
    const live = new Set(this.state.instances.list().map((i) => i.metadata.uid));
    const orphaned = this.state.allocations
      .list()
      .filter((a) => !a.metadata?.labels?.[HELD_FOR_NODE_LABEL])
      .map((a) => a.spec.instance.uid)
      .filter((uid) => !live.has(uid));
    for (const uid of new Set(orphaned)) await this.allocator.release(uid);
    if (orphaned.length)
      this.logger.info('released addresses of vanished Instances', { addresses: orphaned.length });
  }

  private async releaseHeld(): Promise<void> {
    for (const a of this.allocator.held()) {
      const node = a.metadata?.labels?.[HELD_FOR_NODE_LABEL] as string;
      if (this.state.upForMs(node) < this.config.heldAddressReleaseMs) continue;
      await this.allocator.releaseHeld(a);
      this.logger.info('released an address held for a node that is back', {
        node,
        address: a.spec.ip,
        network: a.spec.network,
      });
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}
