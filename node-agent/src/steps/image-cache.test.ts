// The image cache against a real HTTP server on loopback: one download for many concurrent
// requests, checksums enforced, and nothing partial ever left behind or used.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { IImage } from '@kova/crds';
import fc from 'fast-check';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StatePaths } from '../host/paths.js';
import { ImageCache } from './image-cache.js';

const payload = randomBytes(4 * 1024 * 1024);
const sha = createHash('sha256').update(payload).digest('hex');
let server: Server;
let base: string;
let requests = 0;
let dir: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    requests++;
    if (req.url === '/cut') {
      res.writeHead(200, { 'Content-Length': String(payload.length) });
      res.write(payload.subarray(0, 1024 * 1024));
      setTimeout(() => res.destroy(), 20);
      return;
    }
    if (req.url === '/missing') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'Content-Length': String(payload.length) });
    res.end(payload);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  dir = mkdtempSync(join(tmpdir(), 'kova-cache-test-'));
});

afterAll(() => {
  server.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The payload is random bytes: a raw disk to qemu-img. */
const image = (source: string, sha256 = sha, format: 'qcow2' | 'raw' = 'raw'): IImage => ({
  apiVersion: 'compute.kova.dev/v1alpha1',
  kind: 'Image',
  metadata: { name: 'test' },
  spec: { source, sha256, format },
});
const files = (d: string) => readdirSync(join(d, 'images'));

describe('ImageCache', () => {
  it('fetches an image once for many concurrent requests, then serves it from the cache', async () => {
    const state = mkdtempSync(join(dir, 's-'));
    const cache = new ImageCache(new StatePaths(state));
    requests = 0;
    const paths = await Promise.all(
      Array.from({ length: 10 }, () => cache.ensure(image(`${base}/ok`))),
    );
    expect(new Set(paths).size).toBe(1);
    expect(requests).toBe(1);
    await cache.ensure(image(`${base}/ok`));
    expect(requests).toBe(1);
    expect(cache.stats).toEqual({ hits: 1, misses: 1, bytesFetched: payload.length });
    expect(files(state)).toEqual([`${sha}.img`]);
  });

  it('refuses a download whose checksum differs, as a fault no node could fix, leaving no file', async () => {
    const state = mkdtempSync(join(dir, 's-'));
    const err = await new ImageCache(new StatePaths(state))
      .ensure(image(`${base}/ok`, 'e'.repeat(64)))
      .catch((e) => e);
    expect(err).toMatchObject({ reason: 'ChecksumMismatch', retryable: false });
    expect(err.message).toContain(`has sha256 ${sha}`);
    expect(files(state)).toEqual([]);
  });

  it('reports a download cut midway as ImageDownloadFailed, another node may succeed, and leaves no partial file', async () => {
    const state = mkdtempSync(join(dir, 's-'));
    const err = await new ImageCache(new StatePaths(state))
      .ensure(image(`${base}/cut`))
      .catch((e) => e);
    expect(err).toMatchObject({ reason: 'ImageDownloadFailed', retryable: true });
    expect(files(state)).toEqual([]);
  });

  it('reports an HTTP error with its status', async () => {
    const state = mkdtempSync(join(dir, 's-'));
    const err = await new ImageCache(new StatePaths(state))
      .ensure(image(`${base}/missing`))
      .catch((e) => e);
    expect(err).toMatchObject({ reason: 'ImageDownloadFailed' });
    expect(err.message).toContain('HTTP 404');
  });

  it('accepts only http(s) URLs and absolute node-local paths as sources, whatever else it is given (property)', async () => {
    const state = mkdtempSync(join(dir, 's-'));
    const cache = new ImageCache(new StatePaths(state));
    const before = requests;
    const scheme = fc
      .stringMatching(/^[a-z][a-z0-9+.-]{0,9}$/)
      .filter((s) => s !== 'http' && s !== 'https');
    const source = fc.oneof(
      fc
        .tuple(scheme, fc.constantFrom('://127.0.0.1/ok', ':/etc/passwd', '://host/../x', ':'))
        .map(([s, rest]) => `${s}${rest}`),
      fc
        .fullUnicodeString({ maxLength: 40 })
        .filter((s) => !s.startsWith('/') && !/^https?:/i.test(s)),
    );
    await fc.assert(
      fc.asyncProperty(source, async (src) => {
        const err = await cache.ensure(image(src)).catch((e) => e);
        expect(err).toMatchObject({ reason: 'InvalidImage', retryable: false });
      }),
      { numRuns: 300 },
    );
    expect(requests).toBe(before);
    expect(files(state)).toEqual([]);
  });

  it('copies a node-local image into the cache, checked like a download', async () => {
    const state = mkdtempSync(join(dir, 's-'));
    const local = join(dir, 'local.img');
    writeFileSync(local, payload);
    const path = await new ImageCache(new StatePaths(state)).ensure(image(local));
    expect(path).toBe(join(state, 'images', `${sha}.img`));
  });

  it('removes bases unused for longer than the TTL, and keeps those in use', async () => {
    const state = mkdtempSync(join(dir, 's-'));
    const cache = new ImageCache(new StatePaths(state));
    const path = await cache.ensure(image(`${base}/ok`));
    const old = new Date(Date.now() - 2 * 3600_000);
    utimesSync(path, old, old);
    expect(await cache.collect(new Set([sha]), 3600_000)).toEqual([]);
    expect(await cache.collect(new Set(), 3600_000)).toEqual([`${sha}.img`]);
    expect(files(state)).toEqual([]);
  });

  describe('#12.13 untrusted qcow2 headers', () => {
    /** An image made by real qemu-img, offered as a node-local source with its true checksum. */
    const crafted = (name: string, ...args: string[]): IImage & { spec: { source: string } } => {
      const path = join(dir, name);
      execFileSync('qemu-img', ['create', '-q', ...args, path, '64M']);
      const sum = createHash('sha256').update(readFileSync(path)).digest('hex');
      const format = args[args.indexOf('-f') + 1] as 'qcow2' | 'raw';
      return image(path, sum, format) as IImage & { spec: { source: string } };
    };
    const refused = async (img: IImage) => {
      const state = mkdtempSync(join(dir, 's-'));
      const err = await new ImageCache(new StatePaths(state)).ensure(img).catch((e) => e);
      expect(files(state)).toEqual([]);
      return err;
    };

    it('#12.13 refuses a qcow2 with a backing file (/etc/passwd) as UnsafeImage and caches nothing', async () => {
      const img = crafted('backing.qcow2', '-f', 'qcow2', '-F', 'raw', '-b', '/etc/passwd');
      const err = await refused(img);
      expect(err).toMatchObject({ reason: 'UnsafeImage', retryable: false });
      expect(err.message).toContain('backing file /etc/passwd');
    });

    it("#12.13 refuses a qcow2 backed by another Instance's disk", async () => {
      const victim = join(dir, 'victim-root.qcow2');
      execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', victim, '64M']);
      const img = crafted('steal.qcow2', '-f', 'qcow2', '-F', 'qcow2', '-b', victim);
      expect(await refused(img)).toMatchObject({ reason: 'UnsafeImage', retryable: false });
    });

    it('#12.13 refuses a qcow2 with an external data file', async () => {
      const img = crafted(
        'datafile.qcow2',
        '-f',
        'qcow2',
        '-o',
        `data_file=${join(dir, 'data.raw')}`,
      );
      const err = await refused(img);
      expect(err).toMatchObject({ reason: 'UnsafeImage', retryable: false });
      expect(err.message).toContain(`external file ${join(dir, 'data.raw')}`);
    });

    it('#12.13 refuses a qcow2 declared as raw, and a raw file declared as qcow2', async () => {
      const qcow = crafted('plain.qcow2', '-f', 'qcow2');
      const asRaw = await refused(image(qcow.spec.source, qcow.spec.sha256, 'raw'));
      expect(asRaw).toMatchObject({ reason: 'UnsafeImage', retryable: false });
      expect(asRaw.message).toContain('declares format raw but its content is qcow2');
      const raw = crafted('plain.raw', '-f', 'raw');
      const asQcow = await refused(image(raw.spec.source, raw.spec.sha256, 'qcow2'));
      expect(asQcow.message).toContain('declares format qcow2 but its content is raw');
    });

    it("#12.13 fetches a direct-boot kernel as plain bytes, though its Image's disk is qcow2", async () => {
      const state = mkdtempSync(join(dir, 's-'));
      const disk = image(`${base}/ok`, 'a'.repeat(64), 'qcow2');
      const kernel = { source: `${base}/ok`, sha256: sha };
      const path = await new ImageCache(new StatePaths(state)).ensure({
        ...disk,
        spec: { ...disk.spec, kernel, source: kernel.source, sha256: kernel.sha256 },
      });
      expect(path).toBe(join(state, 'images', `${sha}.img`));
    });

    it('#12.13 accepts a self-contained qcow2, and a raw disk declared raw', async () => {
      const state = mkdtempSync(join(dir, 's-'));
      const cache = new ImageCache(new StatePaths(state));
      const qcow = crafted('good.qcow2', '-f', 'qcow2');
      const raw = crafted('good.raw', '-f', 'raw');
      await cache.ensure(qcow);
      await cache.ensure(image(raw.spec.source, raw.spec.sha256, 'raw'));
      expect(files(state).sort()).toEqual(
        [`${qcow.spec.sha256}.img`, `${raw.spec.sha256}.img`].sort(),
      );
    });
  });
});
