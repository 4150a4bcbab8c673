import { describe, expect, it } from '@jest/globals';
import { StatePaths } from './paths.js';

describe('StatePaths', () => {
  const paths = new StatePaths('/var/lib/kova');

  it('builds instance and image paths from UIDs and checksums only', () => {
    expect(paths.instanceFile('0b7c6a2e-1f0e-4c3a-9d6e-5a4b3c2d1e0f', 'root.qcow2')).toBe(
      '/var/lib/kova/instances/0b7c6a2e-1f0e-4c3a-9d6e-5a4b3c2d1e0f/root.qcow2',
    );
    expect(paths.image('a'.repeat(64))).toBe(`/var/lib/kova/images/${'a'.repeat(64)}.img`);
  });

  it.each(['../../etc', '0b7c6a2e-1f0e-4c3a-9d6e-5a4b3c2d1e0f/../..', '/etc/passwd', '', 'web-1'])(
    'refuses %j as an Instance UID',
    (uid) => {
      expect(() => paths.instanceDir(uid)).toThrow(/not an Instance UID/);
    },
  );

  it.each(['../' + 'a'.repeat(61), 'A'.repeat(64), 'a'.repeat(63)])(
    'refuses %j as an image checksum',
    (sha) => {
      expect(() => paths.image(sha)).toThrow(expect.objectContaining({ reason: 'InvalidImage' }));
    },
  );
});
