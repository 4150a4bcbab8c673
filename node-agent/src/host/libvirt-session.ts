// One libvirt connection that heals itself: keepalive detects a dead daemon, the close callback
// fires, and we reconnect with backoff, re-subscribe to lifecycle events and ask for a resync.
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
}

export class LibvirtSession {
  private current: Connection | undefined;
  private connecting: Promise<Connection> | undefined;
  private stopped = false;
  private backoffMs = 200;

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

  async close(): Promise<void> {
    this.stopped = true;
    const c = this.current;
    this.current = undefined;
    await c?.close();
  }

  private async connect(): Promise<Connection> {
    for (;;) {
      if (this.stopped) throw new Error('libvirt session closed');
      try {
        const c = await open(this.opts.uri);
        // Drivers without a daemon (test:///default) have no keepalive and say so.
        await c.setKeepAlive(5, 3).catch((err) => {
          if (!isLibvirtError(err, ErrorCode.NO_SUPPORT)) throw err;
        });
        c.onLifecycleEvent(this.opts.onEvent);
        c.onClose((reason) => this.lost(c, reason));
        this.current = c;
        this.backoffMs = 200;
        this.opts.logger.info('connected to libvirt', { uri: this.opts.uri });
        this.opts.onConnected();
        return c;
      } catch (err) {
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

  private lost(c: Connection, reason: number): void {
    if (this.current !== c) return;
    this.current = undefined;
    this.opts.logger.warn('libvirt connection lost; reconnecting', { uri: this.opts.uri, reason });
    c.close().catch(() => undefined);
    if (!this.stopped) void this.conn().catch(() => undefined);
  }
}
