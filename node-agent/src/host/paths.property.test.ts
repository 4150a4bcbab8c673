// Property test: no string an Instance or Image can carry turns into a path outside the
// agent's state dir. Paths are built from UIDs and checksums only; anything else is refused.
import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { sep } from 'node:path';
import { StatePaths } from './paths.js';

const paths = new StatePaths('/var/lib/kova');
const traversal = fc
  .array(
    fc.constantFrom(
      '..',
      '/',
      '.',
      '%2e',
      '\\',
      '\u0000',
      'etc',
      'passwd',
      '0b7c6a2e-1f0e-4c3a-9d6e-5a4b3c2d1e0f',
      'a'.repeat(64),
    ),
    { maxLength: 8 },
  )
  .map((a) => a.join(''));
const anyString = fc.oneof(fc.fullUnicodeString({ maxLength: 80 }), traversal);

const insideOrRefused = (build: () => string) => {
  let p: string;
  try {
    p = build();
  } catch {
    return;
  }
  expect(p.startsWith(paths.root + sep)).toBe(true);
  expect(p.split(sep)).not.toContain('..');
};

describe('state paths under arbitrary input (property)', () => {
  it('an instance dir or file is inside the state dir, or refused', () => {
    fc.assert(
      fc.property(anyString, (uid) => {
        insideOrRefused(() => paths.instanceDir(uid));
        insideOrRefused(() => paths.instanceFile(uid, 'root.qcow2'));
      }),
      { numRuns: 1000 },
    );
  });

  it('an image path is inside the images dir, or refused', () => {
    fc.assert(
      fc.property(anyString, (sha) => insideOrRefused(() => paths.image(sha))),
      { numRuns: 1000 },
    );
  });
});
