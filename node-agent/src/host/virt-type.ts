// Whether this node's guests run with KVM. Two probes, in order:
//  1. libvirt's domain capabilities (the agent's own connection, so it works in a pod that
//     ships no QEMU): whether libvirt offers a kvm domain on this host at all.
//  2. Where the agent can run QEMU itself (a qemu-system-x86_64 on its PATH and /dev/kvm
//     readable), a boot probe: offered is not enough, since nested or restricted environments
//     expose a /dev/kvm that refuses the host CPU's MSRs, or runs a BIOS but hangs a Linux
//     kernel (seen on this project's CI machines). QEMU boots, under KVM with the CPU model
//     kova's domains use (host-passthrough), its BIOS and then — where a kernel is at hand — a
//     Linux kernel, and KVM is chosen only when both speak.
// The result names the probe that decided, for the Hypervisor's status.
import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access, readdir } from 'node:fs/promises';
import { delimiter, isAbsolute, join } from 'node:path';
import { ErrorCode, isLibvirtError } from '../libvirt/index.js';

/** Which probe decided the hypervisor type (Hypervisor status.hypervisorTypeProbe.probe). */
export type VirtTypeProbeName = 'Configured' | 'TestDriver' | 'DomainCapabilities' | 'BootProbe';

export interface VirtTypeProbe {
  virtType: 'kvm' | 'qemu';
  probe: VirtTypeProbeName;
  /** Why, in words: what the deciding probe saw. */
  reason: string;
}

/** The hypervisor type the agent runs its domains with, and which probe chose it. */
export type VirtTypeDecision =
  | VirtTypeProbe
  | { virtType: 'kvm' | 'qemu' | 'test'; probe: 'Configured' | 'TestDriver'; reason: string };

export interface DetectOptions {
  /** libvirt's domain capabilities for a domain type (Connection.domainCapabilities). */
  domainCapabilities: (virtType: 'kvm') => Promise<string>;
  qemu?: string;
  timeoutMs?: number;
  kernel?: string | undefined | Promise<string | undefined>;
}

export async function detectVirtType(opts: DetectOptions): Promise<VirtTypeProbe> {
  const offered = await libvirtOffersKvm(opts.domainCapabilities);
  if (!offered.kvm) return { virtType: 'qemu', probe: 'DomainCapabilities', reason: offered.why };
  const qemu = await runnableQemu(opts.qemu ?? 'qemu-system-x86_64');
  if (typeof qemu !== 'string') {
    const reason = `${offered.why}; no boot probe: ${qemu.why}`;
    return { virtType: 'kvm', probe: 'DomainCapabilities', reason };
  }
  const boot = await bootProbe(qemu, opts.timeoutMs ?? 3000, opts.kernel ?? probeKernel());
  return { ...boot, probe: 'BootProbe', reason: `${offered.why}; ${boot.reason}` };
}

/** Whether libvirt offers a kvm domain here, and libvirt's words when it does not. */
export async function libvirtOffersKvm(
  domainCapabilities: DetectOptions['domainCapabilities'],
): Promise<{ kvm: boolean; why: string }> {
  try {
    const xml = await domainCapabilities('kvm');
    const path = /<path>([^<]*)<\/path>/.exec(xml)?.[1] ?? 'its QEMU';
    return /<domain>kvm<\/domain>/.test(xml)
      ? { kvm: true, why: `libvirt offers kvm domains (${path})` }
      : { kvm: false, why: 'libvirt offers no kvm domain' };
  } catch (err) {
    const refused = [ErrorCode.INVALID_ARG, ErrorCode.CONFIG_UNSUPPORTED, ErrorCode.NO_SUPPORT];
    if (!refused.some((code) => isLibvirtError(err, code))) throw err;
    return { kvm: false, why: `libvirt offers no kvm domain: ${(err as Error).message}` };
  }
}

/** The QEMU binary's path when this process can run it under KVM, else why not. */
async function runnableQemu(qemu: string): Promise<string | { why: string }> {
  const candidates = isAbsolute(qemu)
    ? [qemu]
    : (process.env.PATH ?? '').split(delimiter).map((dir) => join(dir, qemu));
  let found: string | undefined;
  for (const path of candidates) {
    if (
      await access(path, constants.X_OK).then(
        () => true,
        () => false,
      )
    ) {
      found = path;
      break;
    }
  }
  if (!found) return { why: `${qemu} is not installed where the agent runs` };
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return { why: 'the agent cannot open /dev/kvm' };
  }
  return found;
}

async function bootProbe(
  qemu: string,
  timeoutMs: number,
  kernel: string | undefined | Promise<string | undefined>,
): Promise<Omit<VirtTypeProbe, 'probe'>> {
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
