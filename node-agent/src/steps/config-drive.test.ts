import { describe, expect, it } from '@jest/globals';
import { metaData, networkConfig, userData, type ConfigDriveInput } from './config-drive.js';

const input = (over: Partial<ConfigDriveInput> = {}): ConfigDriveInput => ({
  instanceId: '0b7c6a2e-1f0e-4c3a-9d6e-5a4b3c2d1e0f',
  hostname: 'web-1',
  sshAuthorizedKeys: ['ssh-ed25519 AAAAC3Nza admin@example'],
  interfaces: [
    {
      network: 'default',
      ip: '10.77.0.10',
      mac: 'fa:16:3e:4d:00:0a',
      gateway: '10.77.0.1',
      prefix: 24,
    },
  ],
  dns: ['10.77.0.1'],
  ...over,
});

describe('config drive', () => {
  it('carries instance-id, hostname and SSH keys in meta-data', () => {
    expect(JSON.parse(metaData(input()))).toEqual({
      'instance-id': '0b7c6a2e-1f0e-4c3a-9d6e-5a4b3c2d1e0f',
      'local-hostname': 'web-1',
      'public-keys': ['ssh-ed25519 AAAAC3Nza admin@example'],
    });
  });

  it('gives each interface its static address, matched by MAC, with the default route on the first', () => {
    const cfg = JSON.parse(networkConfig(input()));
    expect(cfg).toEqual({
      version: 2,
      ethernets: {
        eth0: {
          match: { macaddress: 'fa:16:3e:4d:00:0a' },
          'set-name': 'eth0',
          addresses: ['10.77.0.10/24'],
          routes: [{ to: '0.0.0.0/0', via: '10.77.0.1' }],
          nameservers: { addresses: ['10.77.0.1'] },
        },
      },
    });
  });

  it('passes userData through untouched, and without it installs the SSH keys by cloud-config', () => {
    const script = '#!/bin/sh\necho "hello"\n';
    expect(userData(input({ userData: script }))).toBe(script);
    const generated = userData(input());
    expect(generated.startsWith('#cloud-config\n')).toBe(true);
    expect(JSON.parse(generated.slice('#cloud-config\n'.length))).toEqual({
      ssh_authorized_keys: ['ssh-ed25519 AAAAC3Nza admin@example'],
    });
  });

  it('keeps hostile strings as data: meta-data stays one JSON document with the same values', () => {
    const evil = 'x"\n  "instance-id": "hijacked", "z": "';
    const md = JSON.parse(metaData(input({ hostname: evil, sshAuthorizedKeys: [evil] })));
    expect(md['instance-id']).toBe('0b7c6a2e-1f0e-4c3a-9d6e-5a4b3c2d1e0f');
    expect(md['local-hostname']).toBe(evil);
    expect(md['public-keys']).toEqual([evil]);
  });
});
