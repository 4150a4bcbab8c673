// Error: a fault no other hypervisor can cure. Nothing the Instance held stays held, and no
// condition keeps saying what no longer holds (Scheduled, NetworkReady, Ready).
import { ConditionType, type Fault } from '@kova/crds';
import { done, type Result, type SyncContext } from '../sync-context.js';
import { RECORD_FIELDS } from './bound-record.js';

/** Moves the Instance to Error with `fault`; the caller has released what it held. */
export function markFailed(ctx: SyncContext, fault: Fault): Result {
  const { status } = ctx;
  const final = { ...fault, time: fault.time ?? new Date().toISOString(), retryable: false };
  if (status.phase !== 'Error') {
    ctx.events.push({ type: 'Warning', reason: final.reason, message: final.message });
  }
  status.set('phase', 'Error').set('fault', final);
  const held = ['nodeName', 'interfaces', 'powerState', 'domainUUID', 'launchedAt'] as const;
  for (const field of [...held, ...RECORD_FIELDS]) status.set(field, null);
  const failed = { status: 'False' as const, reason: final.reason, message: final.message };
  status.setCondition({ type: ConditionType.Scheduled, ...failed });
  status.setCondition({
    type: ConditionType.NetworkReady,
    status: 'False',
    reason: 'AddressesReleased',
    message: 'the Instance failed; its addresses were released',
  });
  for (const type of [ConditionType.BlockDevicesReady, ConditionType.Spawned, ConditionType.Ready])
    if (type === ConditionType.Ready || status.condition(type))
      status.setCondition({ type, ...failed });
  return done;
}

/** An Instance in Error stays there; its conditions are kept consistent with that. */
export async function failed(ctx: SyncContext): Promise<Result> {
  const fault = ctx.inst.status?.fault ?? {
    reason: 'Unknown',
    message: 'the Instance is in Error without a recorded fault',
  };
  return markFailed(ctx, fault);
}
