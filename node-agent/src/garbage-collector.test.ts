// The garbage collector's image half against real files, the real qemu-img and libvirt's test
// driver: what it keeps is what a domain or an overlay on the node would still open.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { logger } from '@kova/controller-kit';
import type { InstanceObject } from '@kova/crds';
import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configFromEnv, type AgentConfig } from './config.js';
import { domainXml } from './domain/xml.js';
import { GarbageCollector } from './garbage-collector.js';
import { LibvirtSession } from './host/libvirt-session.js';
import { StatePaths } from './host/paths.js';
import { ImageCache } from './steps/image-cache.js';

const NODE = 'gc-test-node';
const HOUR = 3600_000;
const log = logger('gc-test', {}, () => undefined);
let dir: string;
let session: LibvirtSession;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kova-gc-test-'));
  session = new LibvirtSession({
    uri: 'test:///default',
    logger: log,
    onEvent: () => undefined,
    onConnected: () => undefined,
  });
});
afterAll(async () => {
  await session.close();
  rmSync(dir, { recursive: true, force: true });
});

const sha = () => randomBytes(32).toString('hex');
const instance = (uid: string, image: string) =>
  ({
    apiVersion: 'compute.kova.dev/v1alpha1',
    kind: 'Instance',
    metadata: { name: `i-${uid.slice(0, 4)}`, namespace: 'default', uid },
    spec: { flavor: 'nano', image, networks: [] },
    status: { nodeName: NODE },
  }) as InstanceObject;

/** A cached base last used two days ago: past any TTL unless something still needs it. */
function cached(paths: StatePaths, kind: 'qcow2' | 'bytes'): string {
  const s = sha();
  const path = paths.image(s);
  mkdirSync(paths.images, { recursive: true });
  if (kind === 'qcow2') execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', path, '64M']);
  else writeFileSync(path, randomBytes(4096));
  const old = new Date(Date.now() - 48 * HOUR);
  utimesSync(path, old, old);
  return s;
}

function overlay(paths: StatePaths, uid: string, baseSha: string): string {
  mkdirSync(paths.instanceDir(uid), { recursive: true });
  const root = paths.instanceFile(uid, 'root.qcow2');
  execFileSync('qemu-img', [
    'create',
    '-q',
    '-f',
    'qcow2',
    '-F',
    'qcow2',
    '-b',
    paths.image(baseSha),
    root,
    '1G',
  ]);
  return root;
}

describe('image garbage collection', () => {
  it('#12.8 keeps bases a domain or an overlay still needs: kernel, initrd, the base of an Image whose sha256 changed or that was deleted', async () => {
    const paths = new StatePaths(mkdtempSync(join(dir, 's-')));
    const [changedBase, deletedBase, kernel, initrd, unused, nextKernel] = [
      cached(paths, 'qcow2'),
      cached(paths, 'qcow2'),
      cached(paths, 'bytes'),
      cached(paths, 'bytes'),
      cached(paths, 'qcow2'),
      cached(paths, 'bytes'),
    ];
    // A running Instance booted directly; its Image has since been given a new sha256.
    const running = randomUUID();
    const root = overlay(paths, running, changedBase);
    const conn = await session.conn();
    const dom = await conn.defineXML(
      domainXml({
        uid: running,
        namespace: 'default',
        name: 'web',
        node: NODE,
        virtType: 'test',
        vcpus: 1,
        memoryMiB: 128,
        disks: { root },
        configDrive: paths.instanceFile(running, 'cidata.iso'),
        nics: [],
        consoleLog: paths.instanceFile(running, 'console.log'),
        consoleSocket: paths.instanceFile(running, 'console.sock'),
        kernel: { path: paths.image(kernel), initrd: paths.image(initrd) },
      }),
    );
    // A second Instance, between its disks and its domain, whose Image was deleted.
    const building = randomUUID();
    overlay(paths, building, deletedBase);
    // The changed Image now names a kernel no domain opens yet (a build about to define one).
    const images: Record<string, string[]> = { changed: [sha(), nextKernel] };
    const gc = new GarbageCollector(
      { ...configFromEnv(), nodeName: NODE, orphanGraceMs: HOUR, imageTtlMs: HOUR } as AgentConfig,
      session,
      paths,
      new ImageCache(paths),
      () => [instance(running, 'changed'), instance(building, 'deleted')],
      (name) => images[name] ?? [],
      log,
    );
    try {
      expect(await gc.collect()).toEqual([`image ${unused}.img`]);
      for (const s of [changedBase, deletedBase, kernel, initrd, nextKernel])
        expect(existsSync(paths.image(s))).toBe(true);
    } finally {
      await dom.undefine();
    }
  });

  it('#13.5 keeps the base an Instance was bound to before its overlay exists, though its Image changed', async () => {
    const paths = new StatePaths(mkdtempSync(join(dir, 's-')));
    const [recorded, unused] = [cached(paths, 'qcow2'), cached(paths, 'qcow2')];
    const bound = instance(randomUUID(), 'changed');
    bound.status = {
      ...bound.status,
      image: { name: 'changed', sha256: recorded, format: 'qcow2' },
    };
    const gc = new GarbageCollector(
      { ...configFromEnv(), nodeName: NODE, orphanGraceMs: HOUR, imageTtlMs: HOUR } as AgentConfig,
      session,
      paths,
      new ImageCache(paths),
      () => [bound],
      () => [sha()],
      log,
    );
    expect(await gc.collect()).toEqual([`image ${unused}.img`]);
    expect(existsSync(paths.image(recorded))).toBe(true);
  });
});
