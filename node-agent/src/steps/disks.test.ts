// Block devices with the real qemu-img: what a user of the node would check with ls and
// qemu-img info.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StatePaths } from '../host/paths.js';
import { buildConfigDrive } from './config-drive.js';
import { createDisks } from './disks.js';

const UID = '6f1c2e0a-3b4d-4e5f-8a9b-0c1d2e3f4a5b';
const flavor = { vcpus: 1, memoryMiB: 128, rootDiskGiB: 1, ephemeralGiB: 1, swapMiB: 64 };
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kova-disks-test-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const mode = (p: string) => statSync(p).mode & 0o777;

function base(name: string, ...args: string[]): string {
  const path = join(dir, name);
  execFileSync('qemu-img', ['create', '-q', ...args, path, '64M']);
  return path;
}

describe('createDisks', () => {
  it('#12.14 keeps disks and the config drive (userData, keys) to the QEMU user: dir 0711, files 0600', async () => {
    const paths = new StatePaths(mkdtempSync(join(dir, 's-')));
    // An older agent left the directory world-readable.
    mkdirSync(paths.instanceDir(UID), { recursive: true, mode: 0o755 });
    const disks = await createDisks(paths, UID, base('b.qcow2', '-f', 'qcow2'), 'qcow2', flavor);
    const drive = paths.instanceFile(UID, 'cidata.iso');
    await buildConfigDrive(drive, {
      instanceId: UID,
      hostname: 'web-1',
      sshAuthorizedKeys: ['ssh-ed25519 AAAA test'],
      userData: '#cloud-config\npassword: secret\n',
      interfaces: [],
      dns: [],
    });
    expect(mode(paths.instanceDir(UID))).toBe(0o711);
    for (const f of [disks.root, disks.ephemeral!, disks.swap!, drive]) expect(mode(f)).toBe(0o600);
  });

  it('#12.13 refuses to lay an overlay on a cached base that names a backing file', async () => {
    const paths = new StatePaths(mkdtempSync(join(dir, 's-')));
    const evil = base('evil.qcow2', '-f', 'qcow2', '-F', 'raw', '-b', '/etc/passwd');
    const err = await createDisks(paths, UID, evil, 'qcow2', flavor).catch((e) => e);
    expect(err).toMatchObject({ reason: 'UnsafeImage', retryable: false });
    expect(readdirSync(paths.instanceDir(UID))).toEqual([]);
  });

  it('makes a copy-on-write overlay of the base, grown to the Flavor', async () => {
    const paths = new StatePaths(mkdtempSync(join(dir, 's-')));
    const b = base('plain.raw', '-f', 'raw');
    const disks = await createDisks(paths, UID, b, 'raw', flavor);
    const info = JSON.parse(
      execFileSync('qemu-img', ['info', '--output=json', disks.root], { encoding: 'utf8' }),
    );
    expect(info).toMatchObject({
      format: 'qcow2',
      'backing-filename': b,
      'virtual-size': 2 ** 30,
    });
  });
});
