// Console sessions on this node: the Console and ConsoleLog actions the operator handed here.
// Taking one up publishes where to connect (the endpoint and its certificate's fingerprint) in
// the action's status (Running); the client then has a minute to connect with the ticket whose
// SHA-256 the action names. The ticket opens one connection, once. A Console session relays
// bytes between the client and the guest's serial socket (one session per guest at a time, as
// QEMU serves one client); a ConsoleLog session sends the recorded output. The action then ends
// Succeeded (or Failed with why), which is the session's record in the Instance's history.
import { createHash, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { connect, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { apiStatus, type Logger, type Patcher } from '@kova/controller-kit';
import {
  actionRef,
  finishedStatus,
  ActionReason,
  isFinished,
  isSession,
  type ActionOutcome,
  type ActionStatus,
  type InstanceActionObject,
} from '@kova/crds';
import type { Instance } from '../deps.js';
import type { StatePaths } from '../host/paths.js';
import type { Admission, Hello } from './endpoint.js';

/** How long a client has to connect after the action was taken up. */
export const CONNECT_WINDOW_MS = 60_000;
/** Output a client may be behind before more is dropped for it (the log keeps everything). */
const OUTPUT_CAP = 4 * 1024 * 1024;
/** After the client's input ends, the session lasts until the guest is quiet this long… */
const LINGER_QUIET_MS = 1000;
/** …but no longer than this. */
const LINGER_MAX_MS = 10_000;
/** A closed session's last bytes get this long to reach the client. */
const CLOSE_GRACE_MS = 2000;
const TAIL_BLOCK = 64 * 1024;
const WRITE_ATTEMPTS = 5;

export interface SessionDeps {
  actions: { get(name: string, namespace?: string): InstanceActionObject | undefined };
  instances: { get(name: string, namespace?: string): Instance | undefined };
  patcher: Pick<Patcher, 'mergeStatus'>;
  paths: StatePaths;
  logger: Logger;
  /** Where clients connect, and the fingerprint they pin (known once the endpoint listens). */
  endpoint: () => { endpoint: string; certSHA256: string };
}

const UNAUTHORIZED = {
  ok: false as const,
  reason: ActionReason.Unauthorized,
  message: 'this ticket opens no console on this node (wrong, used or expired)',
};

export class ConsoleSessions {
  /** Session actions this agent took up, with their expiry timers; a ticket opens one connection. */
  private readonly pending = new Map<string, NodeJS.Timeout>();
  /** Session actions being served now (by UID). */
  private readonly serving = new Set<string>();
  /** Per Instance UID, the Console action whose session is open (QEMU serves one client). */
  private readonly open = new Map<string, string>();

  constructor(private readonly d: SessionDeps) {}

  /** Every event of an action handed to this node comes here. */
  observe(a: InstanceActionObject): void {
    if (!isSession(a.spec)) return;
    const uid = a.metadata.uid;
    if (a.status?.phase === 'Accepted' && !this.pending.has(uid)) void this.takeUp(a);
    // Running but unknown here: taken up by an agent process before this one, whose certificate
    // and tickets are gone.
    else if (a.status?.phase === 'Running' && !this.pending.has(uid) && !this.serving.has(uid))
      void this.finish(a, {
        ok: false,
        reason: ActionReason.AgentRestarted,
        message: 'the node agent restarted before the client connected; open a new console',
      });
  }

  /** Stops the expiry timers (the endpoint closing cuts the sessions themselves). */
  stop(): void {
    for (const t of this.pending.values()) clearTimeout(t);
    this.pending.clear();
  }

  async admit(hello: Hello): Promise<Admission> {
    const a = this.d.actions.get(hello.action, hello.namespace);
    if (!a || !this.pending.has(a.metadata.uid) || !ticketMatches(hello.ticket, a))
      return UNAUTHORIZED;
    const inst = this.d.instances.get(a.spec.instance, a.metadata.namespace);
    if (!inst || inst.metadata.uid !== a.status?.instanceUID || inst.metadata.deletionTimestamp)
      return {
        ok: false,
        reason: ActionReason.InstanceNotFound,
        message: `Instance ${a.spec.instance} is not on this node, or is being deleted`,
      };
    const busy = this.open.get(inst.metadata.uid);
    if (a.spec.action === 'Console' && busy)
      return {
        ok: false,
        reason: ActionReason.ConsoleBusy,
        message: `a console session (InstanceAction ${busy}) is open on Instance ${a.spec.instance}; QEMU serves one at a time`,
      };
    clearTimeout(this.pending.get(a.metadata.uid));
    this.pending.delete(a.metadata.uid);
    this.serving.add(a.metadata.uid);
    if (a.spec.action === 'Console') this.open.set(inst.metadata.uid, a.metadata.name);
    return { ok: true, serve: (socket, ready) => this.serve(a, inst, socket, ready) };
  }

  private async takeUp(a: InstanceActionObject): Promise<void> {
    const uid = a.metadata.uid;
    this.pending.set(
      uid,
      setTimeout(() => {
        this.pending.delete(uid);
        void this.finish(a, {
          ok: false,
          reason: ActionReason.ConsoleTimeout,
          message: `no client connected within ${CONNECT_WINDOW_MS / 1000}s`,
        });
      }, CONNECT_WINDOW_MS),
    );
    await this.write(a, {
      phase: 'Running',
      reason: ActionReason.WaitingForClient,
      message: `connect to ${this.d.endpoint().endpoint} with the ticket within ${CONNECT_WINDOW_MS / 1000}s`,
      startTime: new Date().toISOString(),
      console: this.d.endpoint(),
    });
  }

  private async serve(
    a: InstanceActionObject,
    inst: Instance,
    client: TLSSocket,
    ready: () => void,
  ): Promise<void> {
    const started = Date.now();
    try {
      const outcome =
        a.spec.action === 'Console'
          ? await this.relay(inst, client, ready, started)
          : await this.sendLog(inst, client, ready, a.spec.tailLines);
      await this.finish(a, outcome);
    } finally {
      if (this.open.get(inst.metadata.uid) === a.metadata.name) this.open.delete(inst.metadata.uid);
      this.serving.delete(a.metadata.uid);
    }
  }

  /**
   * Carries keys in (with backpressure: the guest reads at its UART's pace) and output out —
   * never holding the guest back: a client more than OUTPUT_CAP behind loses output (the log
   * keeps it all), so a stalled client cannot stall the guest's serial port.
   */
  private async relay(
    inst: Instance,
    client: TLSSocket,
    ready: () => void,
    started: number,
  ): Promise<ActionOutcome> {
    const guest = connect(this.d.paths.instanceFile(inst.metadata.uid, 'console.sock'));
    try {
      await once(guest, 'connect');
    } catch (err) {
      const message = `the guest's serial console cannot be reached (${(err as Error).message}); it exists while the domain runs`;
      client.end(
        `${JSON.stringify({ ok: false, reason: ActionReason.ConsoleUnavailable, message })}\n`,
      );
      return { ok: false, reason: ActionReason.ConsoleUnavailable, message };
    }
    ready();
    const bytes = { in: 0, out: 0, dropped: 0 };
    client.on('data', (b: Buffer) => (bytes.in += b.length));
    client.pipe(guest, { end: false });
    guest.on('data', (b: Buffer) => {
      bytes.out += b.length;
      if (client.writableLength > OUTPUT_CAP) bytes.dropped += b.length;
      else client.write(b);
    });
    client.resume();
    await sessionEnd(client, guest);
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    const dropped = bytes.dropped
      ? ` (${bytes.dropped} not delivered: the client fell behind)`
      : '';
    return {
      ok: true,
      message: `console session of ${secs}s: ${bytes.in} bytes in, ${bytes.out} bytes out${dropped}`,
    };
  }

  /** Streams the log, or its last lines, from disk (never the whole file in memory). */
  private async sendLog(
    inst: Instance,
    client: TLSSocket,
    ready: () => void,
    tail: number | undefined,
  ): Promise<ActionOutcome> {
    const path = this.d.paths.instanceFile(inst.metadata.uid, 'console.log');
    const start = tail === undefined ? 0 : await tailStart(path, tail);
    ready();
    let sent = 0;
    const file = createReadStream(path, { start }).on('data', (b) => (sent += b.length));
    try {
      await pipeline(file, client);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      client.end();
    }
    return { ok: true, message: `sent ${sent} bytes of console output` };
  }

  private async finish(a: InstanceActionObject, o: ActionOutcome): Promise<void> {
    await this.write(a, finishedStatus(o));
    this.d.logger.info('console session finished', {
      action: `${a.metadata.namespace}/${a.metadata.name}`,
      kind: a.spec.action,
      result: o.ok ? 'Succeeded' : o.reason,
    });
  }

  /**
   * A status write on the freshest copy; a 409 (the informer lagged our own write) is retried.
   * A finished action is never written again: its record stays as it ended.
   */
  private async write(a: InstanceActionObject, status: ActionStatus): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const cur = this.d.actions.get(a.metadata.name, a.metadata.namespace) ?? a;
      if (isFinished(cur.status?.phase)) return;
      try {
        await this.d.patcher.mergeStatus(
          actionRef(a),
          cur.metadata.resourceVersion as string,
          status,
        );
        return;
      } catch (err) {
        if (apiStatus(err) === 404) return;
        if (apiStatus(err) !== 409 || attempt >= WRITE_ATTEMPTS) {
          this.d.logger.warn('could not record the console session', {
            action: a.metadata.name,
            error: err as Error,
          });
          return;
        }
        await new Promise((r) => setTimeout(r, 200 * attempt));
      }
    }
  }
}

function ticketMatches(ticket: string, a: InstanceActionObject): boolean {
  const want = Buffer.from(a.spec.ticketSHA256 ?? '', 'hex');
  const got = createHash('sha256').update(ticket, 'utf8').digest();
  return want.length === got.length && timingSafeEqual(want, got);
}

/** Where the last `lines` lines of the file start (a final newline ends a line, starts none). */
async function tailStart(path: string, lines: number): Promise<number> {
  const fh = await open(path, 'r').catch(() => undefined);
  if (!fh) return 0;
  try {
    const buf = Buffer.alloc(TAIL_BLOCK);
    let end = (await fh.stat()).size;
    let atEnd = true;
    let seen = 0;
    while (end > 0) {
      const from = Math.max(0, end - TAIL_BLOCK);
      const { bytesRead } = await fh.read(buf, 0, end - from, from);
      for (let i = bytesRead - 1; i >= 0; i--) {
        const newline = buf[i] === 0x0a;
        if (newline && !atEnd && ++seen === lines) return from + i + 1;
        atEnd = false;
      }
      end = from;
    }
    return 0;
  } finally {
    await fh.close();
  }
}

/**
 * Resolves once the session is over: either side closed, or the client's input ended (a script)
 * and the guest has then been quiet a moment. Both sides are closed after.
 */
function sessionEnd(client: TLSSocket, guest: Socket): Promise<void> {
  return new Promise((resolve) => {
    const timers: NodeJS.Timeout[] = [];
    let over = false;
    const done = () => {
      if (over) return;
      over = true;
      timers.forEach(clearTimeout);
      guest.destroy();
      client.end();
      setTimeout(() => client.destroy(), CLOSE_GRACE_MS).unref();
      resolve();
    };
    client.once('close', done);
    guest.once('close', done);
    client.once('end', () => {
      const quiet = () => {
        clearTimeout(timers[0]);
        timers[0] = setTimeout(done, LINGER_QUIET_MS);
      };
      quiet();
      guest.on('data', quiet);
      timers.push(setTimeout(done, LINGER_MAX_MS));
    });
  });
}
