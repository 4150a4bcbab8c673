import { afterAll, describe, expect, it } from '@jest/globals';
import { constants, chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { biosRunsOnKvm, detectVirtType } from './virt-type.js';

const dir = mkdtempSync(join(tmpdir(), 'kova-virt-type-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A stand-in for qemu-system-x86_64 that runs this shell script body. */
function fakeQemu(name: string, body: string): string {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

const kvmUsable = () =>
  access('/dev/kvm', constants.R_OK | constants.W_OK).then(
    () => true,
    () => false,
  );

describe('biosRunsOnKvm', () => {
  it('is true when the BIOS says it runs on KVM, even if QEMU keeps running', async () => {
    const qemu = fakeQemu(
      'kvm-ok',
      'echo "SeaBIOS (version 1.16)"; echo "Running on KVM"; sleep 30',
    );
    const t0 = Date.now();
    expect(await biosRunsOnKvm(qemu, 5000)).toBe(true);
    expect(Date.now() - t0).toBeLessThan(4000);
  });

  it('is false when QEMU exits without the line (KVM refused the CPU)', async () => {
    const qemu = fakeQemu('kvm-refused', 'echo "kvm: failed to set MSR" >&2; exit 1');
    expect(await biosRunsOnKvm(qemu, 5000)).toBe(false);
  });

  it('is false when QEMU hangs silent past the timeout', async () => {
    expect(await biosRunsOnKvm(fakeQemu('hang', 'sleep 30'), 300)).toBe(false);
  });

  it('is false when there is no QEMU binary', async () => {
    expect(await biosRunsOnKvm(join(dir, 'missing'), 1000)).toBe(false);
  });
});

describe('detectVirtType', () => {
  it('picks kvm when /dev/kvm is usable and the probe succeeds, and TCG when the probe fails', async () => {
    const ok = fakeQemu('kvm-ok-2', 'echo "Running on KVM"');
    const refused = fakeQemu('kvm-refused-2', 'exit 1');
    expect(await detectVirtType(ok)).toBe((await kvmUsable()) ? 'kvm' : 'qemu');
    expect(await detectVirtType(refused)).toBe('qemu');
  });

  it('on this machine, agrees with the probe run on the real QEMU', async () => {
    const expected =
      (await kvmUsable()) && (await biosRunsOnKvm('qemu-system-x86_64', 3000)) ? 'kvm' : 'qemu';
    expect(await detectVirtType()).toBe(expected);
  });
});
