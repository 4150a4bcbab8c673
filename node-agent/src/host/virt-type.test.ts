import { describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { detectVirtType } from './virt-type.js';

/** What QEMU itself says when asked to run the host CPU under KVM for a moment. */
function kvmRunsHostCpu(): boolean {
  try {
    const out = execFileSync(
      'timeout',
      [
        '3',
        'qemu-system-x86_64',
        '-accel',
        'kvm',
        '-cpu',
        'host',
        '-display',
        'none',
        '-nodefaults',
        '-m',
        '32',
        '-chardev',
        'stdio,id=b',
        '-device',
        'isa-debugcon,iobase=0x402,chardev=b',
      ],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
    );
    return out.includes('Running on KVM');
  } catch (err) {
    return String((err as { stdout?: string }).stdout ?? '').includes('Running on KVM');
  }
}

describe('detectVirtType', () => {
  it('picks kvm exactly when QEMU can run the host CPU under KVM, else TCG', async () => {
    expect(await detectVirtType()).toBe(kvmRunsHostCpu() ? 'kvm' : 'qemu');
  });
});
