import { afterAll, describe, expect, it } from '@jest/globals';
import { execFileSync, spawnSync } from 'node:child_process';
import { constants, chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { biosRunsOnKvm, detectVirtType } from './virt-type.js';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
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
  const biosOk = 'case "$*" in *debugcon*) echo "Running on KVM";; esac';

  it('picks kvm when /dev/kvm is usable and the BIOS and a kernel run, and TCG when the BIOS fails', async () => {
    const ok = fakeQemu(
      'kvm-ok-2',
      `${biosOk}; case "$*" in *-kernel*) echo "Linux version 6";; esac`,
    );
    const refused = fakeQemu('kvm-refused-2', 'exit 1');
    const kernel = join(dir, 'vmlinuz');
    expect((await detectVirtType(ok, 3000, kernel)).virtType).toBe(
      (await kvmUsable()) ? 'kvm' : 'qemu',
    );
    expect((await detectVirtType(refused, 3000, kernel)).virtType).toBe('qemu');
  });

  it('picks TCG when the BIOS runs under KVM but a Linux kernel hangs silent', async () => {
    const hangs = fakeQemu('kernel-hangs', `${biosOk}; case "$*" in *-kernel*) sleep 30;; esac`);
    const probe = await detectVirtType(hangs, 300, join(dir, 'vmlinuz'));
    expect(probe.virtType).toBe('qemu');
    if (await kvmUsable()) expect(probe.reason).toContain('does not boot under KVM');
  });

  it('on this machine, the accelerator it picks boots the test guest kernel', async () => {
    const guest = execFileSync('bash', [join(repoRoot, 'hack', 'guest', 'build.sh')], {
      encoding: 'utf8',
    })
      .trim()
      .split('\n')
      .pop() as string;
    const kernel = join(guest, 'vmlinuz');
    const { virtType } = await detectVirtType('qemu-system-x86_64', 3000, kernel);
    const accel = virtType === 'kvm' ? ['-accel', 'kvm', '-cpu', 'host'] : ['-accel', 'tcg'];
    const boot = spawnSync(
      'qemu-system-x86_64',
      [
        ...accel,
        ...['-display', 'none', '-nodefaults', '-no-reboot', '-m', '128', '-serial', 'stdio'],
        ...['-kernel', kernel, '-append', 'console=ttyS0 panic=-1'],
      ],
      { encoding: 'utf8', timeout: 30_000 },
    );
    expect(boot.stdout).toContain('Linux version');
  }, 120_000);
});
