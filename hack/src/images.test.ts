// The images `npm run images` builds (hack/images/build.sh): each archive is a valid OCI image
// layout whose digests hold, whose config runs the right entrypoint as the right user, and whose
// root filesystem really runs that entrypoint; and the Dockerfiles build the same image.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { until } from './until.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
interface ImageRecipe {
  workspaces: string[];
  packages: string[];
  user: string;
  entrypoint: string[];
}
const recipe = JSON.parse(readFileSync(join(root, 'hack', 'images', 'images.json'), 'utf8')) as {
  registry: string;
  images: Record<string, ImageRecipe>;
};
/**
 * The programs the agent's sources run through host/exec.ts (`run('name'`, the program named
 * on the line of the call, as every call site writes it), and those the legacy guard runs by
 * variable.
 */
function agentPrograms(): string[] {
  const src = join(root, 'node-agent', 'src');
  const names = new Set(['iptables', 'ip6tables']);
  const files = execFileSync('find', [src, '-name', '*.ts', '!', '-name', '*.test.ts'], {
    encoding: 'utf8',
  });
  for (const file of files.trim().split('\n'))
    for (const m of readFileSync(file, 'utf8').matchAll(/\brun\('([a-z0-9-]+)'/g))
      names.add(m[1] as string);
  return [...names].sort();
}

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}
interface ImageConfig {
  config: { User: string; Entrypoint: string[]; WorkingDir: string };
  rootfs: { diff_ids: string[] };
}

const sha256 = (buf: Buffer) => `sha256:${createHash('sha256').update(buf).digest('hex')}`;
let archives: Record<string, string> = {};

beforeAll(() => {
  const out = execFileSync('bash', [join(root, 'hack', 'images', 'build.sh')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const paths = out.trim().split('\n');
  archives = Object.fromEntries(
    Object.keys(recipe.images).map((name) => [
      name,
      paths.find((p) => p.includes(`/${name}-`)) as string,
    ]),
  );
}, 900_000);

/** Unpacks an OCI archive; returns a reader of its blobs, checked against their digests. */
function openLayout(archive: string) {
  const dir = mkdtempSync(join(tmpdir(), 'kova-image-test-'));
  execFileSync('tar', ['-xf', archive, '-C', dir]);
  const blob = (d: Descriptor) => {
    const buf = readFileSync(join(dir, 'blobs', 'sha256', d.digest.replace('sha256:', '')));
    expect({ digest: sha256(buf), size: buf.length }).toEqual({ digest: d.digest, size: d.size });
    return buf;
  };
  const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as {
    manifests: Descriptor[];
  };
  return { dir, blob, index };
}

describe.each(Object.entries(recipe.images))('image %s', (name, image) => {
  let layout: ReturnType<typeof openLayout>;
  let config: ImageConfig;
  let layers: Descriptor[];

  beforeAll(() => {
    layout = openLayout(archives[name] as string);
    const manifest = JSON.parse(
      layout.blob(layout.index.manifests[0] as Descriptor).toString(),
    ) as { config: Descriptor; layers: Descriptor[] };
    config = JSON.parse(layout.blob(manifest.config).toString()) as ImageConfig;
    layers = manifest.layers;
  });
  afterAll(() => rmSync(layout.dir, { recursive: true, force: true }));

  it('is a valid OCI image layout, named for the chart, whose layer digests hold', () => {
    expect(JSON.parse(readFileSync(join(layout.dir, 'oci-layout'), 'utf8'))).toEqual({
      imageLayoutVersion: '1.0.0',
    });
    const chart = readFileSync(join(root, 'charts', 'kova', 'Chart.yaml'), 'utf8');
    const appVersion = /^appVersion: "(.*)"$/m.exec(chart)?.[1];
    expect(layout.index.manifests[0]?.annotations?.['io.containerd.image.name']).toBe(
      `${recipe.registry}/${name}:${appVersion}`,
    );
    const diffIds = layers.map((l) => sha256(gunzipSync(layout.blob(l))));
    expect(diffIds).toEqual(config.rootfs.diff_ids);
  });

  it('runs its entrypoint as its user, from /app', () => {
    expect(config.config).toMatchObject({
      User: image.user,
      Entrypoint: image.entrypoint,
      WorkingDir: '/app',
    });
    if (name === 'kova-operator') expect(config.config.User).not.toMatch(/^0(:|$)/);
  });

  it('starts: its root filesystem runs the entrypoint (`--version`) as that user', () => {
    const rootfs = join(layout.dir, 'rootfs');
    mkdirSync(rootfs);
    for (const l of layers)
      execFileSync('tar', [
        '-xzf',
        join(layout.dir, 'blobs', 'sha256', l.digest.slice(7)),
        '-C',
        rootfs,
      ]);
    const out = execFileSync(
      '/usr/sbin/chroot',
      [`--userspec=${image.user}`, rootfs, ...image.entrypoint, '--version'],
      { encoding: 'utf8', env: { PATH: '/usr/local/bin:/usr/bin:/bin' }, cwd: '/' },
    );
    expect(out.trim()).toMatch(new RegExp(`^${name} \\d+\\.\\d+\\.\\d+$`));
    // The programs the agent runs through host/exec.ts (disks, config drives, bridges,
    // firewall, prlimit) are in its image: a missing one fails only when an Instance needs it,
    // on a real node. (QEMU itself is not: the KVM probe runs it only where it is installed.)
    if (name === 'kova-node-agent')
      for (const tool of agentPrograms())
        execFileSync(
          '/usr/sbin/chroot',
          [rootfs, tool, tool === 'ip' || tool === 'bridge' ? '-V' : '--version'],
          {
            env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' },
            stdio: 'pipe',
          },
        );
  });

  it('is what its Dockerfile builds: the same Node.js, packages, user and entrypoint', () => {
    const workspace = image.workspaces[image.workspaces.length - 1] as string;
    const dockerfile = readFileSync(join(root, workspace, 'Dockerfile'), 'utf8');
    const finalStage = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    const nodeVersion = (
      JSON.parse(readFileSync(join(root, 'hack', 'images', 'images.json'), 'utf8')) as {
        node: { version: string };
      }
    ).node.version;
    expect(finalStage).toContain(`FROM node:${nodeVersion}-bookworm-slim`);
    const installed = /apt-get install -y --no-install-recommends ([^\\&\n]+)/.exec(finalStage);
    expect(installed?.[1]?.trim().split(/\s+/)).toEqual(image.packages);
    expect(finalStage).toContain(`USER ${image.user}`);
    expect(finalStage).toContain(
      `ENTRYPOINT ${JSON.stringify(image.entrypoint).replaceAll(',', ', ')}`,
    );
    expect(finalStage).toContain('WORKDIR /app');
  });
});

// What a kubelet's runtime does with the archives: containerd (Debian's) imports them and runc
// runs them. A private containerd (own root, state and socket) that touches no other.
describe('in containerd', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kova-containerd-'));
  const socket = join(dir, 'containerd.sock');
  let containerd: ChildProcess;
  const ctr = (...args: string[]) =>
    execFileSync('ctr', ['-a', socket, '-n', 'kova-images-test', ...args], { encoding: 'utf8' });

  beforeAll(async () => {
    const config = [
      'version = 2',
      `root = "${dir}/root"`,
      `state = "${dir}/state"`,
      `[grpc]\n  address = "${socket}"`,
      '[plugins."io.containerd.grpc.v1.cri"]\n  disable_tcp_service = true',
    ].join('\n');
    writeFileSync(join(dir, 'config.toml'), config);
    containerd = spawn('containerd', ['--config', join(dir, 'config.toml')], { stdio: 'ignore' });
    await until(
      'containerd answers',
      () => existsSync(socket) && ctr('version').includes('Server'),
    );
  }, 60_000);

  afterAll(async () => {
    containerd.kill('SIGTERM');
    await new Promise((r) => containerd.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  });

  it.each(Object.entries(recipe.images))(
    'imports %s with ctr and runs it as its user: `--version`',
    (name, image) => {
      const imported = ctr('images', 'import', archives[name] as string);
      const ref = /unpacking (\S+) /.exec(imported)?.[1] as string;
      expect(ref).toMatch(new RegExp(`^${recipe.registry}/${name}:`));
      const run = (id: string, ...args: string[]) =>
        ctr('run', '--rm', ref, `${name}-${id}`, ...args).trim();
      expect(run('version', ...image.entrypoint, '--version')).toMatch(new RegExp(`^${name} `));
      const node = image.entrypoint[0] as string;
      expect(run('id', node, '-e', 'console.log(`${process.getuid()}:${process.getgid()}`)')).toBe(
        image.user,
      );
    },
    120_000,
  );
});
