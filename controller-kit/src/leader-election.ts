// Leader election on a coordination.k8s.io Lease, as client-go's leaderelection: a candidate
// takes the Lease when it is free or expired, renews it every retry period, and steps down when
// it could not renew within the renew deadline. The API server's resourceVersion check makes
// every take-over a compare-and-swap, so two candidates never both win one term.
import { CoordinationV1Api, KubeConfig, V1MicroTime, type V1Lease } from '@kubernetes/client-node';
import type { Registry } from 'prom-client';
import { apiStatus } from './errors.js';
import type { Logger } from './log.js';
import { kitMetrics } from './metrics.js';

export interface LeaderElectionOptions {
  lease: string;
  namespace: string;
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  logger?: Logger;
  registry?: Registry;
  /** Runs while leading; its signal aborts when leadership is lost or released. */
  onStartedLeading: (signal: AbortSignal) => void | Promise<void>;
  onStoppedLeading?: () => void;
  /**
   * Called when a term's work has not stopped within the renew deadline after the term ended
   * (a hung API call): the process should exit, as controller-runtime's managers do, since the
   * Lease must not be given up while this term may still write.
   */
  onTermStuck?: () => void;
}

/** Sleeps for ms, or less if the signal aborts first. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((r) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      r();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

export class LeaderElector {
  private readonly api: CoordinationV1Api;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly stop = new AbortController();
  private leading: AbortController | undefined;
  private observed: V1Lease | undefined;
  private observedRecord = '';
  private observedAt = 0;
  private running: Promise<void> | undefined;
  /** The leader's work failed in this term: release the Lease so another candidate leads. */
  private failed = false;

  constructor(
    kc: KubeConfig,
    private readonly opts: LeaderElectionOptions,
  ) {
    this.api = kc.makeApiClient(CoordinationV1Api);
    this.leaseDurationMs = opts.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = opts.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = opts.retryPeriodMs ?? 2_000;
    if (this.renewDeadlineMs >= this.leaseDurationMs)
      throw new Error('renewDeadlineMs must be shorter than leaseDurationMs');
  }

  isLeader(): boolean {
    return this.leading !== undefined;
  }

  /** Starts campaigning in the background. */
  start(): void {
    this.running ??= this.campaign();
  }

  /** Stops campaigning; a leader releases the Lease so another candidate takes over at once. */
  async release(): Promise<void> {
    this.stop.abort();
    await this.running;
  }

  private async campaign(): Promise<void> {
    while (!this.stop.signal.aborted) {
      if (await this.tryAcquireOrRenew()) {
        await this.lead();
        await sleep(this.retryPeriodMs, this.stop.signal);
      } else {
        await sleep(this.retryPeriodMs, this.stop.signal);
      }
    }
  }

  /**
   * One term: the leader's work runs until leadership is lost or released. Work that fails
   * ends the term (we step down, so another candidate leads rather than a leader doing
   * nothing); work that returns leaves us leading, as client-go does. The Lease is
   * released only after the work has stopped, and the next campaign starts only then, so two
   * terms of this process never overlap.
   */
  private async lead(): Promise<void> {
    const term = new AbortController();
    this.leading = term;
    this.transition(true);
    const work = Promise.resolve()
      .then(() => this.opts.onStartedLeading(term.signal))
      .catch((err) => this.stepDown(term, err as Error));
    let lastRenew = Date.now();
    while (!this.stop.signal.aborted && !term.signal.aborted) {
      await sleep(this.retryPeriodMs, AbortSignal.any([this.stop.signal, term.signal]));
      if (this.stop.signal.aborted || term.signal.aborted) break;
      if (await this.renewWithin(this.renewDeadlineMs - (Date.now() - lastRenew))) {
        lastRenew = Date.now();
      } else if (Date.now() - lastRenew >= this.renewDeadlineMs || !this.heldByMe(this.observed)) {
        break;
      }
    }
    term.abort();
    await this.drain(work);
    if (this.stop.signal.aborted || this.failed) await this.releaseLease();
    this.failed = false;
    this.leading = undefined;
    this.transition(false);
    this.opts.onStoppedLeading?.();
  }

  /** Waits for the term's work to stop; past the renew deadline, reports the term stuck. */
  private async drain(work: Promise<void>): Promise<void> {
    const stopped = new AbortController();
    const finished = work.then(() => stopped.abort());
    await sleep(this.renewDeadlineMs, stopped.signal);
    if (stopped.signal.aborted) return;
    this.opts.logger?.error('leader work did not stop after the term ended', {
      lease: this.opts.lease,
      waitedMs: this.renewDeadlineMs,
    });
    this.opts.onTermStuck?.();
    await finished;
  }

  private stepDown(term: AbortController, error: Error): void {
    if (term.signal.aborted) return;
    this.failed = true;
    this.opts.logger?.error('leader work failed; stepping down', { lease: this.opts.lease, error });
    term.abort();
  }

  /** A renewal that hangs (an API server that accepts and never answers) counts as failed. */
  private async renewWithin(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>(
      (r) => (timer = setTimeout(() => r(false), Math.max(0, ms))),
    );
    try {
      return await Promise.race([this.tryAcquireOrRenew(), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private transition(leading: boolean): void {
    const lease = this.opts.lease;
    const m = kitMetrics(this.opts.registry);
    m.isLeader.set({ lease }, leading ? 1 : 0);
    m.leaderTransitions.inc({ lease });
    this.opts.logger?.info(leading ? 'became leader' : 'stopped leading', {
      lease,
      identity: this.opts.identity,
    });
  }

  private heldByMe(lease: V1Lease | undefined): boolean {
    return lease?.spec?.holderIdentity === this.opts.identity;
  }

  /**
   * Judged by our own clock from when we last saw the record change, as client-go does, so a
   * skewed clock on the holder's machine cannot make the Lease look fresh or stale.
   */
  private expired(lease: V1Lease): boolean {
    const spec = lease.spec ?? {};
    if (!spec.holderIdentity) return true;
    return Date.now() > this.observedAt + (spec.leaseDurationSeconds ?? 0) * 1000;
  }

  private observe(lease: V1Lease): void {
    const record = `${lease.spec?.holderIdentity}|${String(lease.spec?.renewTime)}`;
    if (record !== this.observedRecord) {
      this.observedRecord = record;
      this.observedAt = Date.now();
    }
    this.observed = lease;
  }

  /** One compare-and-swap on the Lease; true when we hold it afterwards. */
  private async tryAcquireOrRenew(): Promise<boolean> {
    const { lease: name, namespace, identity } = this.opts;
    const now = new V1MicroTime();
    try {
      const current = await this.api.readNamespacedLease({ name, namespace }).catch((err) => {
        if (apiStatus(err) === 404) return undefined;
        throw err;
      });
      if (!current) {
        this.observed = await this.api.createNamespacedLease({
          namespace,
          body: this.leaseBody(name, now, now, 0),
        });
        return true;
      }
      this.observe(current);
      const mine = this.heldByMe(current);
      if (!mine && !this.expired(current)) return false;
      const spec = current.spec ?? {};
      const acquire = mine ? (spec.acquireTime ?? now) : now;
      const transitions = (spec.leaseTransitions ?? 0) + (mine ? 0 : 1);
      const body = {
        ...this.leaseBody(name, acquire, now, transitions),
        metadata: { ...current.metadata },
      };
      this.observed = await this.api.replaceNamespacedLease({ name, namespace, body });
      return true;
    } catch (err) {
      const status = apiStatus(err);
      if (status !== 409)
        this.opts.logger?.warn('lease update failed', {
          lease: name,
          identity,
          error: err as Error,
          status,
        });
      return false;
    }
  }

  private leaseBody(name: string, acquire: Date, renew: Date, transitions: number): V1Lease {
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name, namespace: this.opts.namespace },
      spec: {
        holderIdentity: this.opts.identity,
        leaseDurationSeconds: Math.ceil(this.leaseDurationMs / 1000),
        acquireTime: acquire as V1MicroTime,
        renewTime: renew as V1MicroTime,
        leaseTransitions: transitions,
      },
    };
  }

  private async releaseLease(): Promise<void> {
    const { lease: name, namespace } = this.opts;
    const current = this.observed;
    if (!current || !this.heldByMe(current)) return;
    const body: V1Lease = {
      ...current,
      spec: {
        ...current.spec,
        holderIdentity: undefined,
        leaseDurationSeconds: 1,
        renewTime: new V1MicroTime(),
      },
    };
    await this.api.replaceNamespacedLease({ name, namespace, body }).catch((err) =>
      this.opts.logger?.warn('could not release the lease; it expires by itself', {
        lease: name,
        error: err as Error,
      }),
    );
  }
}
