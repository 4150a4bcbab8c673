// The native binding against libvirt's test driver (no daemon) and, where it runs, a real
// libvirtd with QEMU under TCG.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { open, isNoDomain, type Connection } from './binding.js';
import { DomainState, ErrorCode, LifecycleEvent, ListFlags } from './constants.js';

const testDomainXml = (name: string, uuid = randomUUID()) =>
  `<domain type='test'><name>${name}</name><uuid>${uuid}</uuid><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>`;

describe('libvirt binding on test:///default', () => {
  let conn: Connection;
  beforeAll(async () => {
    conn = await open('test:///default');
  });
  afterAll(() => conn.close());

  it('reports node info and versions', async () => {
    const info = await conn.nodeInfo();
    expect(info.cpus).toBeGreaterThan(0);
    expect(info.memoryKiB).toBeGreaterThan(0);
    const v = await conn.versions();
    expect(v.type).toBe('TEST');
    expect(v.libvirt).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('defines, starts, inspects, suspends, resumes, destroys and undefines a domain', async () => {
    const uuid = randomUUID();
    const dom = await conn.defineXML(testDomainXml('kova-binding-1', uuid));
    expect(dom.uuid).toBe(uuid);
    expect(dom.name).toBe('kova-binding-1');
    expect((await dom.getState()).state).toBe(DomainState.SHUTOFF);
    await dom.create();
    expect((await dom.getState()).state).toBe(DomainState.RUNNING);
    expect(dom.getId()).toBeGreaterThan(0);
    expect((await dom.getInfo()).vcpus).toBe(1);
    expect(await dom.getXMLDesc()).toContain(`<uuid>${uuid}</uuid>`);
    await dom.suspend();
    expect((await dom.getState()).state).toBe(DomainState.PAUSED);
    await dom.resume();
    await dom.destroy();
    expect((await dom.getState()).state).toBe(DomainState.SHUTOFF);
    await dom.undefine();
    await expect(conn.lookupByUUID(uuid)).rejects.toMatchObject({ code: ErrorCode.NO_DOMAIN });
  });

  it('finds domains by UUID, by name and in listings', async () => {
    const uuid = randomUUID();
    await conn.defineXML(testDomainXml('kova-binding-2', uuid));
    expect((await conn.lookupByName('kova-binding-2')).uuid).toBe(uuid);
    expect((await conn.lookupByUUID(uuid)).name).toBe('kova-binding-2');
    const inactive = await conn.listAllDomains(ListFlags.INACTIVE);
    expect(inactive.map((d) => d.uuid)).toContain(uuid);
    await (await conn.lookupByUUID(uuid)).undefine();
  });

  it('rejects with libvirt error codes, never bare messages', async () => {
    const err = await conn.lookupByName('no-such-domain').catch((e) => e);
    expect(isNoDomain(err)).toBe(true);
    expect(err.message).toContain('Domain not found');
    await expect(conn.defineXML('<domain')).rejects.toMatchObject({ code: ErrorCode.XML_DETAIL });
  });

  it("delivers lifecycle events from libvirt's event thread", async () => {
    const events: string[] = [];
    const uuid = randomUUID();
    await conn.onLifecycleEvent((e) => {
      if (e.uuid === uuid) events.push(`${e.event}:${e.detail}`);
    });
    const dom = await conn.defineXML(testDomainXml('kova-binding-events', uuid));
    await dom.create();
    await dom.destroy();
    await dom.undefine();
    const deadline = Date.now() + 5000;
    while (events.length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(events.map((e) => Number(e.split(':')[0]))).toEqual([
      LifecycleEvent.DEFINED,
      LifecycleEvent.STARTED,
      LifecycleEvent.STOPPED,
      LifecycleEvent.UNDEFINED,
    ]);
  });

  it('#12.10 registers for events off the JavaScript thread: a Promise of the callback id, deregistered by close', async () => {
    const c = await open('test:///default');
    const registering = c.onLifecycleEvent(() => undefined);
    expect(typeof registering.then).toBe('function'); // the addon's Promise is of another realm
    expect(await registering).toBeGreaterThanOrEqual(0);
    await expect(c.close()).resolves.toBeUndefined();
  });

  it('refuses calls on a closed connection with INVALID_CONN', async () => {
    const c = await open('test:///default');
    await c.close();
    expect(c.isAlive()).toBe(false);
    expect(() => c.nodeInfo()).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_CONN }));
  });

  it('runs 2,000 define/start/destroy/undefine cycles without growing RSS beyond 40 MiB', async () => {
    const cycle = async (i: number) => {
      const dom = await conn.defineXML(testDomainXml(`kova-stress-${i}`));
      await dom.create();
      await dom.destroy();
      await dom.undefine();
    };
    for (let i = 0; i < 200; i++) await cycle(i); // warm up allocators and JIT
    global.gc?.();
    const before = process.memoryUsage().rss;
    for (let i = 200; i < 2200; i++) await cycle(i);
    global.gc?.();
    const grownMiB = (process.memoryUsage().rss - before) / 1024 / 1024;
    expect(grownMiB).toBeLessThan(40);
  });
});

const hasQemu = (() => {
  try {
    execFileSync('virsh', ['-c', 'qemu:///system', 'version'], { stdio: 'pipe', timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
})();

describe('libvirt binding on qemu:///system', () => {
  it('reaches the real daemon and reports QEMU', async () => {
    expect(hasQemu).toBe(true);
    const conn = await open('qemu:///system');
    try {
      await conn.setKeepAlive(5, 3);
      const v = await conn.versions();
      expect(v.type).toBe('QEMU');
      expect(conn.isAlive()).toBe(true);
    } finally {
      await conn.close();
    }
  });
});
