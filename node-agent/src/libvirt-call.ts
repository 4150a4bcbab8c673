// Every libvirt call the reconciler makes goes through here, timed by operation.
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
