// Writes an OCI image layout (https://github.com/opencontainers/image-spec) from layer tars:
// each layer gzipped (no name, no time: same bytes in, same digest out), a config that runs
// the entrypoint as the given user, a manifest, and index.json naming the image for
// `ctr images import` (io.containerd.image.name) and other tools (org.opencontainers.image.ref.name).
// Usage: node oci-layout.mjs --out DIR --name REF --tag TAG --user UID:GID --entrypoint JSON
//          --epoch SECONDS [--workdir DIR] [--env K=V…] --layer TAR --history TEXT [--layer TAR
//          --history TEXT…]
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';

const { values: a } = parseArgs({
  options: {
    out: { type: 'string' },
    name: { type: 'string' },
    tag: { type: 'string' },
    user: { type: 'string' },
    entrypoint: { type: 'string' },
    epoch: { type: 'string', default: '0' },
    workdir: { type: 'string', default: '/' },
    env: { type: 'string', multiple: true, default: [] },
    layer: { type: 'string', multiple: true },
    history: { type: 'string', multiple: true },
  },
});
for (const k of ['out', 'name', 'tag', 'user', 'entrypoint', 'layer', 'history'])
  if (!a[k]) throw new Error(`oci-layout: --${k} is required`);
if (a.history.length !== a.layer.length)
  throw new Error('oci-layout: give one --history per --layer');

const sha256 = (buf) => `sha256:${createHash('sha256').update(buf).digest('hex')}`;
const blobs = join(a.out, 'blobs', 'sha256');
mkdirSync(blobs, { recursive: true });
/** Stores a blob by its digest; returns its descriptor. */
function blob(mediaType, buf) {
  const digest = sha256(buf);
  writeFileSync(join(blobs, digest.slice('sha256:'.length)), buf);
  return { mediaType, digest, size: buf.length };
}
const json = (obj) => Buffer.from(JSON.stringify(obj));

const created = new Date(Number(a.epoch) * 1000).toISOString();
const layers = [];
const diffIds = [];
for (const path of a.layer) {
  const tar = readFileSync(path);
  diffIds.push(sha256(tar));
  layers.push(blob('application/vnd.oci.image.layer.v1.tar+gzip', gzipSync(tar, { level: 9 })));
}
const config = blob(
  'application/vnd.oci.image.config.v1+json',
  json({
    created,
    architecture: 'amd64',
    os: 'linux',
    config: {
      User: a.user,
      Entrypoint: JSON.parse(a.entrypoint),
      WorkingDir: a.workdir,
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', ...a.env],
      Labels: { 'org.opencontainers.image.version': a.tag },
    },
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: a.history.map((text) => ({ created, created_by: text })),
  }),
);
const manifest = blob(
  'application/vnd.oci.image.manifest.v1+json',
  json({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config,
    layers,
  }),
);
writeFileSync(join(a.out, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
writeFileSync(
  join(a.out, 'index.json'),
  JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      {
        ...manifest,
        platform: { architecture: 'amd64', os: 'linux' },
        annotations: {
          'io.containerd.image.name': a.name,
          'org.opencontainers.image.ref.name': a.tag,
        },
      },
    ],
  }),
);
process.stdout.write(`${manifest.digest}\n`);
