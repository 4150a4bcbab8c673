// The image cache against a real HTTP server on loopback: one download for many concurrent
// requests, checksums enforced, and nothing partial ever left behind or used.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { IImage } from '@kova/crds';
import fc from 'fast-check';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
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

const image = (source: string, sha256 = sha): IImage => ({
  apiVersion: 'compute.kova.dev/v1alpha1',
  kind: 'Image',
  metadata: { name: 'test' },
  spec: { source, sha256 },
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
});
