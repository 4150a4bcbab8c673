// Whether this node can run guests with KVM. /dev/kvm existing is not enough (nested or
// restricted environments expose a device that cannot run a guest, or refuse the host CPU's
// MSRs), so QEMU boots its BIOS under KVM with the CPU model kova's domains use
// (host-passthrough) and we look for SeaBIOS saying it runs on KVM.
import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';

export async function detectVirtType(
  qemu = 'qemu-system-x86_64',
  timeoutMs = 3000,
): Promise<'kvm' | 'qemu'> {
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return 'qemu';
  }
  return (await biosRunsOnKvm(qemu, timeoutMs)) ? 'kvm' : 'qemu';
}

/** Boots QEMU's BIOS under KVM for a moment; true when SeaBIOS says it runs on KVM. */
export function biosRunsOnKvm(qemu: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const args = [
      '-accel',
      'kvm',
      '-cpu',
      'host',
      '-display',
      'none',
      '-nodefaults',
      '-m',
      '32',
      '-no-reboot',
      '-chardev',
      'stdio,id=bios',
      '-device',
      'isa-debugcon,iobase=0x402,chardev=bios',
    ];
    const proc = spawn(qemu, args, { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    const finish = (ok: boolean) => {
      clearTimeout(timer);
      proc.kill('SIGKILL');
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('Running on KVM')) finish(true);
    });
    proc.on('error', () => finish(false));
    // 'close', not 'exit': output can still be unread when the process has exited.
    proc.on('close', () => finish(out.includes('Running on KVM')));
  });
}
