// Property tests of the config drive writer: whatever hostname, SSH keys and userData an
// Instance carries, meta-data and network-config are each one JSON document holding exactly
// the values given (nothing injected into another key), and userData reaches the guest byte
// for byte.
import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { metaData, networkConfig, userData, type ConfigDriveInput } from './config-drive.js';

const iface = {
  network: 'default',
  ip: '10.77.0.10',
  mac: 'fa:16:3e:4d:00:0a',
  gateway: '10.77.0.1',
  prefix: 24,
};
const hostile = fc.oneof(
  fc.fullUnicodeString({ maxLength: 60 }),
  fc
    .array(
      fc.constantFrom(
        '"',
        '\\',
        '\n',
        '{',
        '}',
        ':',
        '- ',
        '#cloud-config',
        '"instance-id": "x"',
        '\u0000',
        '\u2028',
        'a',
      ),
      { maxLength: 12 },
    )
    .map((a) => a.join('')),
);

describe('config drive under arbitrary input (property)', () => {
  it('meta-data and network-config hold exactly the given values', () => {
    fc.assert(
      fc.property(
        hostile,
        fc.array(hostile, { maxLength: 4 }),
        fc.array(hostile, { maxLength: 3 }),
        (hostname, keys, dns) => {
          const input: ConfigDriveInput = {
            instanceId: '0b7c6a2e-1f0e-4c3a-9d6e-5a4b3c2d1e0f',
            hostname,
            sshAuthorizedKeys: keys,
            interfaces: [iface],
            dns,
          };
          expect(JSON.parse(metaData(input))).toEqual({
            'instance-id': input.instanceId,
            'local-hostname': hostname,
            'public-keys': keys,
          });
          const net = JSON.parse(networkConfig(input));
          expect(Object.keys(net.ethernets)).toEqual(['eth0']);
          expect(net.ethernets.eth0.addresses).toEqual(['10.77.0.10/24']);
          expect(net.ethernets.eth0.nameservers?.addresses ?? []).toEqual(dns);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('passes userData through unchanged, and generates cloud-config holding only the keys', () => {
    fc.assert(
      fc.property(
        fc.option(hostile, { nil: undefined }),
        fc.array(hostile, { maxLength: 4 }),
        (data, keys) => {
          const input: ConfigDriveInput = {
            instanceId: 'i',
            hostname: 'h',
            sshAuthorizedKeys: keys,
            interfaces: [iface],
            dns: [],
            userData: data,
          };
          const out = userData(input);
          if (data !== undefined) return expect(out).toBe(data);
          expect(out.startsWith('#cloud-config\n')).toBe(true);
          expect(JSON.parse(out.slice('#cloud-config\n'.length))).toEqual({
            ssh_authorized_keys: keys,
          });
        },
      ),
      { numRuns: 500 },
    );
  });
});
