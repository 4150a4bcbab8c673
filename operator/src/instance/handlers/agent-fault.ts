// A build fault reported by the agent of the bound node: release what the attempt held, then
// reschedule to another hypervisor while attempts remain and the fault is retryable (Nova's
// max_attempts), else fail with every attempt listed.
import { ConditionType, type Fault } from '@kova/crds';
import { done, type Result, type SyncContext } from '../sync-context.js';
import { RECORD_FIELDS } from './bound-record.js';
import { markFailed } from './failed.js';

export async function handleAgentFault(ctx: SyncContext): Promise<Result> {
  const { inst, d, status } = ctx;
  const fault = inst.status?.fault as Fault;
  const node = inst.status?.nodeName as string;
  const attempt = {
    node,
    reason: fault.reason,
    message: fault.message,
    time: fault.time ?? new Date().toISOString(),
  };
  const attempts = [...(inst.status?.attempts ?? []), attempt];
  d.state.recordFailure(node);
  d.state.claims.release(inst.metadata.uid);
  await d.allocator.release(inst.metadata.uid);
  status.set('attempts', attempts);
  if (fault.retryable && attempts.length < d.config.maxAttempts) return reschedule(ctx, fault);
  // Nothing was retried (a fault no other node could fix, or one attempt allowed): the fault
  // itself is the reason, not "retries exceeded".
  if (!fault.retryable || attempts.length === 1) return markFailed(ctx, fault);
  const tried = attempts.map((a) => `${a.node}: ${a.reason} (${a.message})`).join('; ');
  return markFailed(ctx, {
    reason: 'MaxRetriesExceeded',
    message: `all ${attempts.length} attempts failed: ${tried}`,
  });
}

function reschedule(ctx: SyncContext, fault: Fault): Result {
  const { status } = ctx;
  const node = ctx.inst.status?.nodeName as string;
  const n = status.get('attempts')?.length ?? 0;
  status.set('phase', 'Scheduling');
  // Nothing of the failed attempt carries over: the next node's build starts its own clock.
  const attemptFields = [
    'nodeName',
    'interfaces',
    'fault',
    'powerState',
    'domainUUID',
    'launchedAt',
    'buildStartedAt',
    'restartBackoff',
    // The next bind records the Flavor and Image afresh, for the node it picks.
    ...RECORD_FIELDS,
  ] as const;
  for (const field of attemptFields) status.set(field, null);
  status.setCondition({
    type: ConditionType.Scheduled,
    status: 'False',
    reason: 'Rescheduling',
    message: `attempt ${n} on ${node} failed with ${fault.reason}; trying another hypervisor`,
  });
  const retrying = { status: 'False' as const, reason: 'Rescheduling', message: fault.message };
  for (const type of [ConditionType.NetworkReady, ConditionType.Ready])
    status.setCondition({ type, ...retrying });
  for (const type of [ConditionType.BlockDevicesReady, ConditionType.Spawned])
    if (status.condition(type)) status.setCondition({ type, ...retrying });
  ctx.events.push({
    type: 'Warning',
    reason: 'Rescheduling',
    message: `${fault.reason} on ${node}: ${fault.message}`,
  });
  return done;
}
