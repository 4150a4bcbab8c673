// Whether this node can run guests with KVM. /dev/kvm existing is not enough: nested or
// restricted environments expose a device that cannot run a guest, refuse the host CPU's MSRs,
// or run a BIOS but hang a Linux kernel (seen on this project's CI machines). So QEMU boots,
// under KVM with the CPU model kova's domains use (host-passthrough), its BIOS and then — where
// a kernel is at hand — a Linux kernel, and KVM is chosen only when both speak.
import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access, readdir } from 'node:fs/promises';

export interface VirtTypeProbe {
  virtType: 'kvm' | 'qemu';
  /** Why, for the agent's log: which probe decided. */
  reason: string;
}

export async function detectVirtType(
  qemu = 'qemu-system-x86_64',
  timeoutMs = 3000,
  kernel: string | undefined | Promise<string | undefined> = probeKernel(),
): Promise<VirtTypeProbe> {
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return { virtType: 'qemu', reason: '/dev/kvm is not usable' };
  }
  if (!(await biosRunsOnKvm(qemu, timeoutMs)))
    return { virtType: 'qemu', reason: 'the BIOS does not run under KVM' };
  const image = await kernel;
  if (!image) return { virtType: 'kvm', reason: 'the BIOS runs under KVM (no kernel to probe)' };
  return (await kernelBootsOnKvm(qemu, image, timeoutMs))
    ? { virtType: 'kvm', reason: `${image} boots under KVM` }
    : { virtType: 'qemu', reason: `${image} does not boot under KVM` };
}

/** A Linux kernel to probe with: $KOVA_KVM_PROBE_KERNEL, else the node's own in /boot. */
export async function probeKernel(): Promise<string | undefined> {
  if (process.env.KOVA_KVM_PROBE_KERNEL) return process.env.KOVA_KVM_PROBE_KERNEL;
  const boot = await readdir('/boot').catch(() => [] as string[]);
  const kernels = boot.filter((f) => f === 'vmlinuz' || f.startsWith('vmlinuz-')).sort();
  return kernels.length ? `/boot/${kernels[kernels.length - 1]}` : undefined;
}

/** Boots the kernel (no root disk: it panics at once) and waits for its first line. */
export function kernelBootsOnKvm(qemu: string, kernel: string, timeoutMs: number) {
  const args = ['-m', '128', '-serial', 'stdio', '-kernel', kernel];
  return qemuSays(qemu, [...args, '-append', 'console=ttyS0 panic=-1'], 'Linux version', timeoutMs);
}

/** Boots QEMU's BIOS under KVM for a moment; true when SeaBIOS says it runs on KVM. */
export function biosRunsOnKvm(qemu: string, timeoutMs: number): Promise<boolean> {
  const args = ['-m', '32', '-chardev', 'stdio,id=bios'];
  const debugcon = ['-device', 'isa-debugcon,iobase=0x402,chardev=bios'];
  return qemuSays(qemu, [...args, ...debugcon], 'Running on KVM', timeoutMs);
}

/** Runs QEMU under KVM with `args`; true once its standard output contains `line`. */
function qemuSays(qemu: string, args: string[], line: string, timeoutMs: number) {
  return new Promise<boolean>((resolve) => {
    const kvm = ['-accel', 'kvm', '-cpu', 'host', '-display', 'none', '-nodefaults', '-no-reboot'];
    const proc = spawn(qemu, [...kvm, ...args], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    const finish = (ok: boolean) => {
      clearTimeout(timer);
      proc.kill('SIGKILL');
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes(line)) finish(true);
    });
    proc.on('error', () => finish(false));
    // 'close', not 'exit': output can still be unread when the process has exited.
    proc.on('close', () => finish(out.includes(line)));
  });
}
