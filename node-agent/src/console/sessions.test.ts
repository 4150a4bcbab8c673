// The console endpoint and its sessions on real sockets: TLS on loopback, and a Unix socket
// standing for QEMU's serial port (a test server that answers every line upper-cased). The
// Kubernetes side is a fake store of InstanceActions and Instances; the e2e suite runs the same
// against a real guest and API server.
import { afterEach, describe, expect, it } from '@jest/globals';
import type { InstanceActionObject } from '@kova/crds';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { StatePaths } from '../host/paths.js';
import { instance, quietLogger, UID } from '../test-support.js';
import { selfSignedCertificate } from './certificate.js';
import { ConsoleEndpoint } from './endpoint.js';
import { ConsoleSessions } from './sessions.js';

const cert = selfSignedCertificate('test');
let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

async function setup(logText = '') {
  const dir = mkdtempSync(join(tmpdir(), 'kova-console-'));
  const paths = new StatePaths(dir);
  mkdirSync(paths.instanceDir(UID), { recursive: true });
  writeFileSync(paths.instanceFile(UID, 'console.log'), logText);
  /** When the stand-in guest had written all of a flood (it was never held back). */
  const flooded: number[] = [];
  const guest: Server = createServer((s) => {
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      if (d.startsWith('later')) setTimeout(() => s.write('LATER\n'), 300);
      else if (d.startsWith('flood'))
        s.write(Buffer.alloc(20 << 20, 120), () => flooded.push(Date.now()));
      else s.write(d.toUpperCase());
    });
  });
  guest.listen(paths.instanceFile(UID, 'console.sock'));
  await once(guest, 'listening');
  const store = new Map<string, InstanceActionObject>();
  const writes: string[] = [];
  const sessions: ConsoleSessions = new ConsoleSessions({
    actions: { get: (name) => store.get(name) },
    instances: { get: () => instance({ phase: 'Active', powerState: 'Running' }) },
    patcher: {
      mergeStatus: async (ref, _rv, status) => {
        const s = status as NonNullable<InstanceActionObject['status']>;
        writes.push(`${ref.name} ${s.phase} ${s.reason}`);
        const cur = store.get(ref.name) as InstanceActionObject;
        store.set(ref.name, { ...cur, status: { ...cur.status, ...s } });
        return store.get(ref.name);
      },
    },
    paths,
    logger: quietLogger,
    endpoint: () => ({ endpoint: '127.0.0.1:0', certSHA256: cert.sha256 }),
  });
  const endpoint = new ConsoleEndpoint(cert, (h) => sessions.admit(h), quietLogger);
  const port = await endpoint.listen('127.0.0.1', 0);
  cleanup.push(async () => {
    sessions.stop();
    await endpoint.close();
    guest.close();
    rmSync(dir, { recursive: true, force: true });
  });
  /** A session action as the operator accepted it, taken up by the sessions. */
  const request = async (name: string, action: 'Console' | 'ConsoleLog', tailLines?: number) => {
    const ticket = `ticket-${name}`;
    store.set(name, {
      metadata: { name, namespace: 'ns', uid: `uid-${name}`, resourceVersion: '1' },
      spec: {
        instance: 'vm',
        action,
        requestedBy: 'alice',
        ticketSHA256: createHash('sha256').update(ticket).digest('hex'),
        ...(tailLines ? { tailLines } : {}),
      },
      status: { phase: 'Accepted', instanceUID: UID, nodeName: 'node-a' },
    } as InstanceActionObject);
    sessions.observe(store.get(name) as InstanceActionObject);
    await new Promise((r) => setImmediate(r));
    return ticket;
  };
  const dial = async (action: string, ticket: string) => {
    const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false });
    // The endpoint closing at the end of a test resets the connections left open.
    socket.on('error', () => undefined);
    await once(socket, 'secureConnect');
    socket.write(`${JSON.stringify({ namespace: 'ns', action, ticket })}\n`);
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (text += d));
    const answer = async () => {
      while (!text.includes('\n')) await once(socket, 'data');
      return JSON.parse(text.slice(0, text.indexOf('\n'))) as Record<string, unknown>;
    };
    return { socket, answer, output: () => text.slice(text.indexOf('\n') + 1) };
  };
  return { request, dial, writes, store, port, flooded };
}

describe('console sessions', () => {
  it('relays keys and output between the client and the serial socket, then records the session', async () => {
    const { request, dial, writes, store } = await setup();
    const ticket = await request('c1', 'Console');
    expect(store.get('c1')?.status).toMatchObject({
      phase: 'Running',
      console: { certSHA256: cert.sha256 },
    });
    const c = await dial('c1', ticket);
    expect(await c.answer()).toEqual({ ok: true });
    c.socket.write('echo hi\n');
    while (!c.output().includes('ECHO HI')) await once(c.socket, 'data');
    c.socket.end();
    await once(c.socket, 'close');
    await new Promise((r) => setTimeout(r, 50));
    expect(writes).toEqual(['c1 Running WaitingForClient', 'c1 Succeeded Succeeded']);
    expect(store.get('c1')?.status?.message).toMatch(/: 8 bytes in, 8 bytes out$/);
  });

  it('lets in only the right ticket, once; a second console on the same guest is busy', async () => {
    const { request, dial } = await setup();
    const ticket = await request('c1', 'Console');
    expect(await (await dial('c1', 'wrong')).answer()).toMatchObject({ reason: 'Unauthorized' });
    expect(await (await dial('nope', ticket)).answer()).toMatchObject({ reason: 'Unauthorized' });
    const first = await dial('c1', ticket);
    expect(await first.answer()).toEqual({ ok: true });
    expect(await (await dial('c1', ticket)).answer()).toMatchObject({ reason: 'Unauthorized' });
    const other = await request('c2', 'Console');
    expect(await (await dial('c2', other)).answer()).toMatchObject({
      reason: 'ConsoleBusy',
      message: expect.stringContaining('c1'),
    });
    first.socket.end();
  });

  it('a client whose input ended still gets what the guest prints after (a script)', async () => {
    const { request, dial } = await setup();
    const c = await dial('c1', await request('c1', 'Console'));
    await c.answer();
    c.socket.end('later\n');
    await once(c.socket, 'close');
    expect(c.output()).toBe('LATER\n');
  });

  it('a client that stops reading never holds the guest back: output beyond the cap is dropped', async () => {
    const { request, dial, flooded, store } = await setup();
    const c = await dial('c1', await request('c1', 'Console'));
    await c.answer();
    c.socket.pause();
    c.socket.write('flood\n');
    const asked = Date.now();
    while (!flooded.length && Date.now() - asked < 10_000)
      await new Promise((r) => setTimeout(r, 50));
    expect(flooded).toHaveLength(1);
    c.socket.destroy();
    while (store.get('c1')?.status?.phase !== 'Succeeded')
      await new Promise((r) => setTimeout(r, 50));
    expect(store.get('c1')?.status?.message).toMatch(/not delivered: the client fell behind/);
  });

  it('sends the recorded output, or its last lines, and closes', async () => {
    const { request, dial } = await setup('one\ntwo\nthree\n');
    const all = await dial('l1', await request('l1', 'ConsoleLog'));
    await once(all.socket, 'close');
    expect(all.output()).toBe('one\ntwo\nthree\n');
    const tail = await dial('l2', await request('l2', 'ConsoleLog', 2));
    await once(tail.socket, 'close');
    expect(tail.output()).toBe('two\nthree\n');
  });

  it('closes a connection that does not say hello with a ticket, answering nothing', async () => {
    const { port } = await setup();
    const c = connect({ host: '127.0.0.1', port, rejectUnauthorized: false });
    await once(c, 'secureConnect');
    let got = '';
    c.on('data', (d: Buffer) => (got += d.toString()));
    c.write('GET / HTTP/1.0\r\n\r\n');
    await once(c, 'close');
    expect(got).toBe('');
  });
});
