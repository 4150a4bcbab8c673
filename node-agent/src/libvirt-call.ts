// Every libvirt call the reconciler makes goes through here, timed by operation.
import { ErrorCode, isLibvirtError } from './libvirt/index.js';
import type { AgentMetrics } from './metrics.js';

export async function lv<T>(
  metrics: Pick<AgentMetrics, 'libvirtSeconds'>,
  op: string,
  fn: () => Promise<T>,
): Promise<T> {
  const end = metrics.libvirtSeconds.startTimer({ op });
  try {
    const r = await fn();
    end({ result: 'ok' });
    return r;
  } catch (err) {
    end({ result: 'error' });
    throw err;
  }
}

/**
 * Runs a state change that libvirt refuses with OPERATION_INVALID when the domain is already
 * in the state asked for (stopping a stopped domain, starting a running one): that is done.
 */
export async function tolerateInvalid(p: Promise<unknown>): Promise<void> {
  await p.catch((err) => {
    if (!isLibvirtError(err, ErrorCode.OPERATION_INVALID)) throw err;
  });
}
