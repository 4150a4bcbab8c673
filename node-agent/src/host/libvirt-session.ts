// One libvirt connection that heals itself: keepalive detects a dead daemon, the close callback
// fires, and we reconnect with backoff, re-subscribe to lifecycle events and ask for a resync.
// Lifecycle events only enqueue work (onEvent) and wake whoever waits for one (nextEvent).
import type { Logger } from '@kova/controller-kit';
import {
  ErrorCode,
  isLibvirtError,
  open,
  type Connection,
  type LifecycleEventData,
} from '../libvirt/index.js';

export interface SessionOptions {
  uri: string;
  logger: Logger;
  onEvent: (e: LifecycleEventData) => void;
  /** Called after every (re)connect: whatever happened while disconnected must be re-read. */
  onConnected: () => void;
  /** Opens a connection; libvirt's by default (tests pass a fake). */
  open?: (uri: string) => Promise<Connection>;
}

export class LibvirtSession {
  private current: Connection | undefined;
  private connecting: Promise<Connection> | undefined;
  private stopped = false;
  private backoffMs = 200;
  private readonly waiters = new Map<string, Set<(e: LifecycleEventData) => void>>();

  constructor(private readonly opts: SessionOptions) {}

  isConnected(): boolean {
    return this.current?.isAlive() ?? false;
  }

  /** A live connection, waiting for the reconnect if the daemon is away. */
  async conn(): Promise<Connection> {
    if (this.current?.isAlive()) return this.current;
    this.connecting ??= this.connect().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  /**
   * The next lifecycle event of the domain with this UUID, or undefined after `timeoutMs`
   * (events can be missed across a reconnect, so callers poll as well).
   */
  nextEvent(uuid: string, timeoutMs: number): Promise<LifecycleEventData | undefined> {
    return new Promise((resolve) => {
      const set = this.waiters.get(uuid) ?? new Set();
      this.waiters.set(uuid, set);
      const done = (e: LifecycleEventData | undefined) => {
        clearTimeout(timer);
        set.delete(done);
        if (set.size === 0 && this.waiters.get(uuid) === set) this.waiters.delete(uuid);
        resolve(e);
      };
      const timer = setTimeout(() => done(undefined), timeoutMs);
      set.add(done);
    });
  }

  async close(): Promise<void> {
    this.stopped = true;
    const c = this.current;
    this.current = undefined;
    await c?.close();
  }

  private async connect(): Promise<Connection> {
    for (;;) {
      if (this.stopped) throw new Error('libvirt session closed');
      let c: Connection | undefined;
      try {
        c = await (this.opts.open ?? open)(this.opts.uri);
        // Drivers without a daemon (test:///default) have no keepalive and say so.
        await c.setKeepAlive(5, 3).catch((err) => {
          if (!isLibvirtError(err, ErrorCode.NO_SUPPORT)) throw err;
        });
        await c.onLifecycleEvent((e) => this.dispatch(e));
        const opened = c;
        c.onClose((reason) => this.lost(opened, reason));
        this.replace(c);
        this.backoffMs = 200;
        this.opts.logger.info('connected to libvirt', { uri: this.opts.uri });
        this.opts.onConnected();
        return c;
      } catch (err) {
        // A connection opened but not set up is closed, not leaked, before the next try.
        await c
          ?.close()
          .catch((e: Error) =>
            this.opts.logger.debug('could not close a half-open libvirt connection', { error: e }),
          );
        this.opts.logger.warn('cannot reach libvirt; retrying', {
          uri: this.opts.uri,
          error: err as Error,
          retryInMs: this.backoffMs,
        });
        await new Promise((r) => setTimeout(r, this.backoffMs));
        this.backoffMs = Math.min(this.backoffMs * 2, 10_000);
      }
    }
  }

  private dispatch(e: LifecycleEventData): void {
    this.opts.onEvent(e);
    for (const w of [...(this.waiters.get(e.uuid) ?? [])]) w(e);
  }

  /**
   * Keepalive can declare a connection dead before its close callback fires; the connection it
   * replaces must still be closed, or each libvirtd restart leaks one (and its event callbacks).
   */
  private replace(c: Connection): void {
    const old = this.current;
    this.current = c;
    if (old && old !== c) this.closeQuietly(old);
  }

  private lost(c: Connection, reason: number): void {
    if (this.current !== c) return this.closeQuietly(c);
    this.current = undefined;
    this.opts.logger.warn('libvirt connection lost; reconnecting', { uri: this.opts.uri, reason });
    this.closeQuietly(c);
    if (!this.stopped) void this.conn().catch(() => undefined);
  }

  private closeQuietly(c: Connection): void {
    c.close().catch((err: Error) =>
      this.opts.logger.debug('closing a dead libvirt connection failed', { error: err }),
    );
  }
}
