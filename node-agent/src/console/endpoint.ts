// The node's console endpoint: a TLS server that lets in only a connection presenting the
// one-time ticket of a console action handed to this node. The protocol: the client sends one
// line of JSON ({namespace, action, ticket}); the endpoint answers one line ({ok: true} once the
// session is ready, or {ok: false, reason, message}) and then carries the session's bytes.
// Nothing else answers here: a handshake or a hello that does not come within seconds, or a
// refused client that lingers, is cut, and only so many connections are held at once.
import { once } from 'node:events';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import type { Logger } from '@kova/controller-kit';
import { ActionReason } from '@kova/crds';
import type { ConsoleCertificate } from './certificate.js';

export interface Hello {
  namespace: string;
  action: string;
  ticket: string;
}

/** A session that may start: `serve` answers ok itself once it is ready, then runs it. */
export type Admission =
  | { ok: true; serve(socket: TLSSocket, ready: () => void): Promise<void> }
  | { ok: false; reason: string; message: string };

const HANDSHAKE_TIMEOUT_MS = 10_000;
const HELLO_TIMEOUT_MS = 10_000;
const REFUSED_LINGER_MS = 2000;
const MAX_HELLO_BYTES = 4096;
const MAX_CONNECTIONS = 64;
const KEEPALIVE_MS = 30_000;

export class ConsoleEndpoint {
  private readonly server: Server;
  private readonly sockets = new Set<TLSSocket>();

  constructor(
    cert: ConsoleCertificate,
    private readonly admit: (hello: Hello) => Promise<Admission>,
    private readonly logger: Logger,
  ) {
    this.server = createServer(
      {
        key: cert.key,
        cert: cert.cert,
        minVersion: 'TLSv1.2',
        handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
        // Half-open: a client whose input ended (a script's stdin) still gets what follows.
        allowHalfOpen: true,
      },
      (s) => this.accept(s),
    );
    this.server.maxConnections = MAX_CONNECTIONS;
    this.server.on('tlsClientError', (err) =>
      this.logger.debug('console endpoint: TLS handshake failed', { error: err }),
    );
  }

  /** Listens; resolves to the port (the one asked for, or the one the system gave for 0). */
  async listen(address: string, port: number): Promise<number> {
    this.server.listen(port, address);
    await Promise.race([
      once(this.server, 'listening'),
      once(this.server, 'error').then(([err]) => Promise.reject(err as Error)),
    ]);
    return (this.server.address() as { port: number }).port;
  }

  /** Stops listening and cuts the sessions in progress (their actions end with that). */
  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    // Connections still in their handshake are cut by its timeout; do not wait past it.
    await Promise.race([closed, new Promise((r) => setTimeout(r, HANDSHAKE_TIMEOUT_MS).unref())]);
  }

  private accept(socket: TLSSocket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.on('error', (err) => this.logger.debug('console connection error', { error: err }));
    socket.setKeepAlive(true, KEEPALIVE_MS);
    this.session(socket).catch((err: Error) => {
      this.logger.warn('console session failed', { error: err });
      socket.destroy();
    });
  }

  private async session(socket: TLSSocket): Promise<void> {
    const hello = await readHello(socket);
    if (!hello) return void socket.destroy();
    const admission = await this.admit(hello).catch((err: Error): Admission => ({
      ok: false,
      reason: ActionReason.InternalError,
      message: err.message,
    }));
    if (!admission.ok) return this.refuse(socket, hello, admission);
    await admission.serve(socket, () => socket.write(`${JSON.stringify({ ok: true })}\n`));
  }

  private refuse(socket: TLSSocket, hello: Hello, r: { reason: string; message: string }) {
    this.logger.info('console connection refused', {
      action: `${hello.namespace}/${hello.action}`,
      reason: r.reason,
    });
    // Read on (and drop) what else comes, so the close is orderly, then cut a client that stays.
    socket.resume();
    socket.end(`${JSON.stringify({ ok: false, reason: r.reason, message: r.message })}\n`);
    setTimeout(() => socket.destroy(), REFUSED_LINGER_MS).unref();
  }
}

/** The first line, parsed; undefined when it is not a hello (too long, too late, not JSON). */
async function readHello(socket: TLSSocket): Promise<Hello | undefined> {
  const line = await new Promise<string | undefined>((resolve) => {
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => done(undefined), HELLO_TIMEOUT_MS);
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const nl = buf.indexOf(0x0a);
      if (nl >= 0) {
        done(buf.subarray(0, nl).toString('utf8'));
        // Bytes after the hello are the first keystrokes: back to the (now paused) stream.
        if (nl + 1 < buf.length) socket.unshift(buf.subarray(nl + 1));
      } else if (buf.length > MAX_HELLO_BYTES) done(undefined);
    };
    const done = (v: string | undefined) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.pause();
      resolve(v);
    };
    const onEnd = () => done(undefined);
    socket.on('data', onData);
    socket.once('end', onEnd);
  });
  if (line === undefined) return undefined;
  try {
    const h = JSON.parse(line) as Partial<Hello>;
    const ok = [h.namespace, h.action, h.ticket].every((v) => typeof v === 'string' && v);
    return ok ? (h as Hello) : undefined;
  } catch {
    return undefined;
  }
}
