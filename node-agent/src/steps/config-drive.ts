// The config drive: a cloud-init NoCloud ISO labelled "cidata" with meta-data (instance-id,
// hostname, SSH keys), user-data and a version 2 network-config with the static addresses the
// operator allocated. Files are written by serialising data (JSON is valid YAML), never by
// pasting user strings into a template.
import { chmod, mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Interface } from '@kova/crds';
import { run } from '../host/exec.js';
import { createPrivate, INSTANCE_DIR_MODE, INSTANCE_FILE_MODE } from './disks.js';

export interface ConfigDriveInput {
  instanceId: string;
  hostname: string;
  sshAuthorizedKeys: string[];
  userData?: string;
  interfaces: Interface[];
  dns: string[];
}

export function metaData(i: ConfigDriveInput): string {
  return `${JSON.stringify({ 'instance-id': i.instanceId, 'local-hostname': i.hostname, 'public-keys': i.sshAuthorizedKeys }, null, 2)}\n`;
}

/** The user's userData as given; with none, a cloud-config that installs the SSH keys. */
export function userData(i: ConfigDriveInput): string {
  if (i.userData !== undefined) return i.userData;
  return `#cloud-config\n${JSON.stringify({ ssh_authorized_keys: i.sshAuthorizedKeys }, null, 2)}\n`;
}

export function networkConfig(i: ConfigDriveInput): string {
  const ethernets: Record<string, unknown> = {};
  i.interfaces.forEach((f, n) => {
    ethernets[`eth${n}`] = {
      match: { macaddress: f.mac },
      'set-name': `eth${n}`,
      addresses: [`${f.ip}/${f.prefix ?? 24}`],
      ...(n === 0 && f.gateway ? { routes: [{ to: '0.0.0.0/0', via: f.gateway }] } : {}),
      ...(i.dns.length ? { nameservers: { addresses: i.dns } } : {}),
    };
  });
  return `${JSON.stringify({ version: 2, ethernets }, null, 2)}\n`;
}

export async function buildConfigDrive(path: string, input: ConfigDriveInput): Promise<void> {
  // Built beside the disks, so it may be first in the Instance's directory. Its sources are
  // written there too: an agent killed mid-build leaves them where the Instance's files go,
  // not in /tmp for good.
  await mkdir(dirname(path), { recursive: true, mode: INSTANCE_DIR_MODE });
  const dir = await mkdtemp(`${path}.src-`);
  try {
    await writeFile(join(dir, 'meta-data'), metaData(input));
    await writeFile(join(dir, 'user-data'), userData(input));
    await writeFile(join(dir, 'network-config'), networkConfig(input));
    await createPrivate(`${path}.tmp`);
    await run('genisoimage', [
      '-quiet',
      '-output',
      `${path}.tmp`,
      '-volid',
      'cidata',
      '-joliet',
      '-rock',
      join(dir, 'meta-data'),
      join(dir, 'user-data'),
      join(dir, 'network-config'),
    ]);
    // userData and keys: for the guest's QEMU only (see disks.ts on modes).
    await chmod(`${path}.tmp`, INSTANCE_FILE_MODE);
    // A rename, not `mv`: the agent's image has no coreutils.
    await rename(`${path}.tmp`, path);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
