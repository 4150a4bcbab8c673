// A leader's chores beside the Instance queue, retried until they succeed and never in the
// queue's way: addresses whose Instance vanished while no operator led are freed, and
// addresses held for a node that was down when their Instance was deleted are freed once that
// node's agent, back, reports the VM gone (or an admin deleted the node's Hypervisor).
import { sleep, type Logger } from '@kova/controller-kit';
import type { ClusterState } from '../cluster-state.js';
import type { OperatorConfig } from '../config.js';
import type { AddressAllocator } from '../ipam/allocator.js';

const RETRY_MIN_MS = 1_000;
const RETRY_MAX_MS = 60_000;

export class Housekeeping {
  constructor(
    private readonly state: ClusterState,
    private readonly allocator: AddressAllocator,
    private readonly config: OperatorConfig,
    private readonly logger: Logger,
  ) {}

  /** Runs the chores every period until the signal aborts; after a failure, sooner. */
  async run(signal: AbortSignal): Promise<void> {
    let retry = RETRY_MIN_MS;
    while (!signal.aborted) {
      const failures = (await this.releaseOrphans()) + (await this.releaseHeld());
      retry = failures ? Math.min(retry * 2, RETRY_MAX_MS) : RETRY_MIN_MS;
      await sleep(failures ? retry : this.config.heldAddressCheckMs, signal);
    }
  }

  /** Runs one chore's step; a failure is logged and counted, and the other steps go on. */
  private async attempt(what: string, step: () => Promise<void>): Promise<number> {
    try {
      await step();
      return 0;
    } catch (err) {
      this.logger.warn(`${what} failed; retrying`, { error: err as Error });
      return 1;
    }
  }

  /**
   * Addresses whose Instance no longer exists (deleted while no operator led) are freed. The
   * Instance and IPBlock views are separate watches, so a missing Instance is confirmed
   * with the API server before its address goes: a lagging watch must not free a live one.
   */
  private async releaseOrphans(): Promise<number> {
    const live = new Set(this.state.instances.list().map((i) => i.metadata.uid));
    const suspects = this.allocator
      .leases()
      .filter((l) => !l.heldForNode)
      .map((l) => l.instance)
      .filter((i) => !live.has(i.uid));
    let failures = 0;
    for (const i of new Map(suspects.map((x) => [x.uid, x])).values()) {
      failures += await this.attempt('releasing the addresses of a vanished Instance', async () => {
        if (await this.state.exists(i)) return;
        await this.allocator.release(i.uid);
        this.logger.info('released the addresses of a vanished Instance', { instance: i });
      });
    }
    return failures;
  }

  private async releaseHeld(): Promise<number> {
    let failures = 0;
    for (const a of this.allocator.held()) {
      const node = a.heldForNode as string;
      if (!this.state.domainGoneFrom(node, a.instance.uid)) continue;
      failures += await this.attempt('releasing an address held for a node', async () => {
        await this.allocator.releaseHeld(a);
        const { ip, network } = a;
        this.logger.info('released an address held for a node: its VM is gone', {
          node,
          ip,
          network,
        });
      });
    }
    return failures;
  }
}
