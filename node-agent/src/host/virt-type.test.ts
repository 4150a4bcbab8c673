import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFileSync, spawnSync } from 'node:child_process';
import { constants, chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { open, type Connection } from '../libvirt/index.js';
import { biosRunsOnKvm, detectVirtType, libvirtOffersKvm } from './virt-type.js';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const dir = mkdtempSync(join(tmpdir(), 'kova-virt-type-'));
let system: Connection;
beforeAll(async () => {
  system = await open('qemu:///system');
});
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  await system.close();
});

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

/** libvirt's answer when the host offers no kvm domain (a stand-in for such a host). */
const refusesKvm = () =>
  Promise.reject(
    Object.assign(new Error("invalid argument: KVM is not supported by '/usr/bin/qemu'"), {
      code: 8,
    }),
  );
/** libvirt's answer when it offers kvm (as qemu:///system does on a host with /dev/kvm). */
const offersKvm = () =>
  Promise.resolve('<domainCapabilities><path>/usr/bin/qemu</path><domain>kvm</domain>');

describe('libvirtOffersKvm', () => {
  it('agrees with `virsh domcapabilities --virttype kvm` on the real daemon', async () => {
    const virsh = spawnSync(
      'virsh',
      ['-c', 'qemu:///system', 'domcapabilities', '--virttype', 'kvm'],
      { encoding: 'utf8', timeout: 60_000 },
    );
    const offered = await libvirtOffersKvm((t) => system.domainCapabilities(t));
    expect(offered.kvm).toBe(virsh.status === 0 && virsh.stdout.includes('<domain>kvm</domain>'));
    if (offered.kvm) expect(offered.why).toContain('qemu-system-x86_64');
  }, 90_000);

  it("says no, in libvirt's words, when libvirt refuses kvm", async () => {
    const offered = await libvirtOffersKvm(refusesKvm);
    expect(offered).toEqual({ kvm: false, why: expect.stringContaining('KVM is not supported') });
  });

  it('lets any other libvirt failure through', async () => {
    const lost = Object.assign(new Error('connection lost'), { code: 38 });
    await expect(libvirtOffersKvm(() => Promise.reject(lost))).rejects.toBe(lost);
  });
});

describe('detectVirtType', () => {
  const biosOk = 'case "$*" in *debugcon*) echo "Running on KVM";; esac';
  const kernel = join(dir, 'vmlinuz');

  it('picks TCG by domain capabilities alone when libvirt offers no kvm, without running QEMU', async () => {
    const never = fakeQemu('never-run', `touch ${join(dir, 'qemu-ran')}`);
    const probe = await detectVirtType({ domainCapabilities: refusesKvm, qemu: never, kernel });
    expect(probe).toMatchObject({ virtType: 'qemu', probe: 'DomainCapabilities' });
    expect(spawnSync('test', ['-e', join(dir, 'qemu-ran')]).status).toBe(1);
  });

  it('picks kvm by domain capabilities where the agent has no QEMU to boot-probe with (its image)', async () => {
    const probe = await detectVirtType({
      domainCapabilities: offersKvm,
      qemu: join(dir, 'not-installed', 'qemu-system-x86_64'),
      kernel,
    });
    expect(probe).toMatchObject({ virtType: 'kvm', probe: 'DomainCapabilities' });
    expect(probe.reason).toContain('no boot probe');
  });

  it('where libvirt offers kvm and QEMU is at hand, the boot probe decides: kvm when BIOS and kernel run, TCG when the BIOS fails', async () => {
    const ok = fakeQemu(
      'kvm-ok-2',
      `${biosOk}; case "$*" in *-kernel*) echo "Linux version 6";; esac`,
    );
    const refused = fakeQemu('kvm-refused-2', 'exit 1');
    const usable = await kvmUsable();
    const okProbe = await detectVirtType({ domainCapabilities: offersKvm, qemu: ok, kernel });
    expect(okProbe).toMatchObject({
      virtType: 'kvm',
      probe: usable ? 'BootProbe' : 'DomainCapabilities',
    });
    if (usable)
      expect(
        await detectVirtType({ domainCapabilities: offersKvm, qemu: refused, kernel }),
      ).toMatchObject({ virtType: 'qemu', probe: 'BootProbe' });
  });

  it('picks TCG when libvirt offers kvm and the BIOS runs under it but a Linux kernel hangs silent', async () => {
    const hangs = fakeQemu('kernel-hangs', `${biosOk}; case "$*" in *-kernel*) sleep 30;; esac`);
    const probe = await detectVirtType({
      domainCapabilities: offersKvm,
      qemu: hangs,
      timeoutMs: 300,
      kernel,
    });
    if (await kvmUsable())
      expect(probe).toMatchObject({
        virtType: 'qemu',
        probe: 'BootProbe',
        reason: expect.stringContaining('does not boot under KVM'),
      });
  });

  it('on this machine, the accelerator it picks through libvirt boots the test guest kernel', async () => {
    const guest = execFileSync('bash', [join(repoRoot, 'hack', 'guest', 'build.sh')], {
      encoding: 'utf8',
    })
      .trim()
      .split('\n')
      .pop() as string;
    const guestKernel = join(guest, 'vmlinuz');
    const { virtType } = await detectVirtType({
      domainCapabilities: (t) => system.domainCapabilities(t),
      kernel: guestKernel,
    });
    const accel = virtType === 'kvm' ? ['-accel', 'kvm', '-cpu', 'host'] : ['-accel', 'tcg'];
    const boot = spawnSync(
      'qemu-system-x86_64',
      [
        ...accel,
        ...['-display', 'none', '-nodefaults', '-no-reboot', '-m', '128', '-serial', 'stdio'],
        ...['-kernel', guestKernel, '-append', 'console=ttyS0 panic=-1'],
      ],
      { encoding: 'utf8', timeout: 30_000 },
    );
    expect(boot.stdout).toContain('Linux version');
  }, 120_000);
});
