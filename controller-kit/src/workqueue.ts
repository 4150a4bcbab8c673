// A work queue in the manner of client-go's: keys are de-duplicated while they wait, a key is
// never handed to two workers at once (a key added while it is being processed runs again
// after), and failed keys come back after a per-key exponential backoff, and never faster
// than an overall token bucket allows (client-go's default controller rate limiter: the
// larger of the two), so a mass failure cannot hammer the API server.
import type { Registry } from 'prom-client';
import { apiStatus } from './errors.js';
import type { Logger } from './log.js';
import { kitMetrics, type KitMetrics } from './metrics.js';

export interface SyncResult {
  /** Process the key again after this many milliseconds (e.g. to poll something slow). */
  requeueAfterMs?: number;
}

export type SyncHandler = (key: string) => Promise<SyncResult | void>;

export interface WorkQueueOptions {
  name: string;
  /** Delay after the first failure; doubles with each further failure. Default 5 ms. */
  baseDelayMs?: number;
  /** Upper bound of the backoff. Default 5 minutes. */
  maxDelayMs?: number;
  /** Retries of all keys together, per second, once the burst is spent. Default 10. */
  overallQps?: number;
  /** Retries allowed at once before the overall rate applies. Default 100. */
  overallBurst?: number;
  logger?: Logger;
  registry?: Registry;
}

export class WorkQueue {
  private readonly ready: string[] = [];
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly enqueuedAt = new Map<string, number>();
  private wake: (() => void)[] = [];
  private stopped = false;
  private readonly metrics: KitMetrics;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly bucket: { tokens: number; at: number; qps: number; burst: number };

  constructor(private readonly opts: WorkQueueOptions) {
    this.metrics = kitMetrics(opts.registry);
    this.baseDelayMs = opts.baseDelayMs ?? 5;
    this.maxDelayMs = opts.maxDelayMs ?? 5 * 60_000;
    const burst = opts.overallBurst ?? 100;
    this.bucket = { tokens: burst, at: Date.now(), qps: opts.overallQps ?? 10, burst };
  }

  get name(): string {
    return this.opts.name;
  }

  /** Keys waiting for a worker (not counting delayed ones or ones being processed). */
  get length(): number {
    return this.ready.length;
  }

  add(key: string): void {
    if (this.stopped || this.dirty.has(key)) return;
    this.dirty.add(key);
    this.enqueuedAt.set(key, performance.now());
    this.metrics.queueAdds.inc({ name: this.name });
    if (this.processing.has(key)) return;
    this.push(key);
  }

  /** Adds the key after a delay; an earlier pending delay for the same key wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.stopped) return;
    if (delayMs <= 0) return this.add(key);
    const at = Date.now() + delayMs;
    const pending = this.timers.get(key);
    if (pending && pending.at <= at) return;
    if (pending) clearTimeout(pending.timer);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, delayMs);
    this.timers.set(key, { at, timer });
  }

  /** Adds the key after its backoff: base × 2^(failures so far), capped at the maximum. */
  addRateLimited(key: string): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    const perKey = Math.min(this.baseDelayMs * 2 ** n, this.maxDelayMs);
    const delay = Math.max(perKey, this.overallDelay());
    this.metrics.queueRetries.inc({ name: this.name });
    this.addAfter(key, delay);
    return delay;
  }

  /** Takes a token from the overall bucket; the wait until that token exists. */
  private overallDelay(): number {
    const b = this.bucket;
    const now = Date.now();
    b.tokens = Math.min(b.burst, b.tokens + ((now - b.at) * b.qps) / 1000);
    b.at = now;
    b.tokens -= 1;
    return b.tokens >= 0 ? 0 : Math.ceil((-b.tokens * 1000) / b.qps);
  }

  /** Clears the key's failure count, so its next failure starts from the base delay. */
  forget(key: string): void {
    this.failures.delete(key);
  }

  failureCount(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /**
   * Runs `workers` workers until shutDown(); resolves once every worker has finished the key it
   * held. A handler that throws gets its key requeued with backoff.
   */
  async run(handler: SyncHandler, workers: number): Promise<void> {
    await Promise.all(Array.from({ length: workers }, () => this.worker(handler)));
  }

  /**
   * A leader's term: runs the workers until `signal` aborts (leadership lost, shutdown), then
   * shuts down; resolves once every sync has finished, so the next term never overlaps it.
   */
  runUntil(signal: AbortSignal, handler: SyncHandler, workers: number): Promise<void> {
    const running = this.run(handler, workers);
    signal.addEventListener('abort', () => this.shutDown(), { once: true });
    if (signal.aborted) this.shutDown();
    return running;
  }

  /** Stops handing out keys and drops delayed ones; keys being processed finish. */
  shutDown(): void {
    this.stopped = true;
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    for (const w of this.wake.splice(0)) w();
  }

  private push(key: string): void {
    this.ready.push(key);
    this.metrics.queueDepth.set({ name: this.name }, this.ready.length);
    this.wake.shift()?.();
  }

  private async take(): Promise<string | undefined> {
    while (!this.stopped && this.ready.length === 0) {
      await new Promise<void>((r) => this.wake.push(r));
    }
    if (this.stopped) return undefined;
    const key = this.ready.shift() as string;
    this.metrics.queueDepth.set({ name: this.name }, this.ready.length);
    this.dirty.delete(key);
    this.processing.add(key);
    const since = this.enqueuedAt.get(key);
    this.enqueuedAt.delete(key);
    if (since !== undefined)
      this.metrics.queueWaitSeconds.observe(
        { name: this.name },
        (performance.now() - since) / 1000,
      );
    return key;
  }

  private done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.has(key)) this.push(key);
  }

  private async worker(handler: SyncHandler): Promise<void> {
    for (let key = await this.take(); key !== undefined; key = await this.take()) {
      const end = this.metrics.queueWorkSeconds.startTimer({ name: this.name });
      try {
        const result = await handler(key);
        this.forget(key);
        if (result?.requeueAfterMs !== undefined) this.addAfter(key, result.requeueAfterMs);
      } catch (err) {
        const delay = this.addRateLimited(key);
        // A 409 means the sync acted on a stale view and was refused; the retry sees fresh data.
        const log = apiStatus(err) === 409 ? this.opts.logger?.debug : this.opts.logger?.warn;
        log?.('sync failed; retrying with backoff', {
          queue: this.name,
          key,
          error: err,
          retryInMs: delay,
        });
      } finally {
        end();
        this.done(key);
      }
    }
  }
}
