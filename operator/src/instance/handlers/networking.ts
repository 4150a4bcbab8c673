// Networking (operator half): an address for every network the Instance asks for. Once all
// are allocated the agent on the bound node takes over (`interfacesAllocated`).
import { ConditionType, type Condition, type Interface } from '@kova/crds';
import { done, RETRY_WAITING_MS, waitFor, type Result, type SyncContext } from '../sync-context.js';
import type { Waiting } from './scheduling.js';

export async function allocateRemaining(ctx: SyncContext): Promise<Result> {
  const { interfaces, waiting } = await allocateAll(ctx);
  const before = ctx.status.condition(ConditionType.NetworkReady);
  ctx.status.set('interfaces', interfaces);
  ctx.status.setCondition(networkCondition(waiting));
  if (!waiting) return done;
  if (before?.reason !== waiting.reason || before.message !== waiting.message) {
    ctx.events.push({ type: 'Warning', ...waiting });
  }
  return waitFor(RETRY_WAITING_MS);
}

export async function allocateAll(
  ctx: SyncContext,
): Promise<{ interfaces: Interface[]; waiting?: Waiting }> {
  const interfaces: Interface[] = [];
  for (const req of ctx.inst.spec.networks) {
    const end = ctx.d.metrics.apiWriteSeconds.startTimer({ op: 'allocate' });
    const a = await ctx.d.allocator.allocate(ctx.inst, req).finally(end);
    if ('reason' in a) return { interfaces, waiting: a };
    interfaces.push(a.interface);
  }
  return { interfaces };
}

export function networkCondition(
  waiting: Waiting | undefined,
): Omit<Condition, 'lastTransitionTime'> {
  const c = waiting ?? {
    reason: 'AddressesAllocated',
    message: 'addresses allocated; waiting for the node agent to plug the interfaces',
  };
  return { type: ConditionType.NetworkReady, status: 'False', ...c };
}
