import { describe, expect, it } from '@jest/globals';
import { FakeConnection, quietLogger } from '../test-support.js';
import { LibvirtSession } from './libvirt-session.js';

function session(opened: FakeConnection[]) {
  return new LibvirtSession({
    uri: 'test:///fake',
    logger: quietLogger,
    onEvent: () => undefined,
    onConnected: () => undefined,
    open: async () => {
      const c = new FakeConnection();
      opened.push(c);
      return c;
    },
  });
}

describe('LibvirtSession', () => {
  it('#12.10 closes a connection it replaces after libvirtd restarts (no leak per restart)', async () => {
    const opened: FakeConnection[] = [];
    const s = session(opened);
    const first = await s.conn();
    // Keepalive declares the connection dead before its close callback runs.
    (first as FakeConnection).alive = false;
    const second = await s.conn();
    expect(second).not.toBe(first);
    expect(opened[0]?.closed).toBe(true);
    // The late close callback of the old connection changes nothing.
    opened[0]?.dropConnection();
    expect(await s.conn()).toBe(second);
    await s.close();
    expect(opened.every((c) => c.closed)).toBe(true);
  });

  it('reconnects when the connection closes underneath it', async () => {
    const opened: FakeConnection[] = [];
    const s = session(opened);
    await s.conn();
    opened[0]?.dropConnection();
    await new Promise((r) => setTimeout(r, 10));
    expect(opened).toHaveLength(2);
    expect(opened[0]?.closed).toBe(true);
    await s.close();
  });

  it('nextEvent resolves on the domain’s next lifecycle event, or undefined at its timeout', async () => {
    const opened: FakeConnection[] = [];
    const s = session(opened);
    await s.conn();
    const waiting = s.nextEvent('u-1', 5000);
    const other = s.nextEvent('u-2', 20);
    opened[0]?.emit({ uuid: 'u-1', name: 'd', event: 2, detail: 0 });
    expect(await waiting).toMatchObject({ uuid: 'u-1', event: 2 });
    expect(await other).toBeUndefined();
    await s.close();
  });
});
