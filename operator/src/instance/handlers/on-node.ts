// After the hand-off the Instance is the agent's (BlockDeviceMapping, Spawning, Active,
// Stopped): the operator only records how long each phase took, once per Instance.
import { ConditionType, type Phase } from '@kova/crds';
import { done, type Result, type SyncContext } from '../sync-context.js';

/** The phase that ends when each condition turns True. */
const PHASE_ENDS: [Phase, string][] = [
  ['Scheduling', ConditionType.Scheduled],
  ['Networking', ConditionType.NetworkReady],
  ['BlockDeviceMapping', ConditionType.BlockDevicesReady],
  ['Spawning', ConditionType.Spawned],
];

export async function observeOnNode({ inst, d }: SyncContext): Promise<Result> {
  const ready = inst.status?.conditions?.find((c) => c.type === ConditionType.Ready);
  const uid = inst.metadata.uid;
  if (inst.status?.phase !== 'Active' || ready?.status !== 'True' || d.observedActive.has(uid))
    return done;
  d.observedActive.add(uid);
  const created = Date.parse(inst.metadata.creationTimestamp as unknown as string);
  d.metrics.createToActiveSeconds.observe((Date.parse(ready.lastTransitionTime) - created) / 1000);
  let from = created;
  for (const [phase, type] of PHASE_ENDS) {
    const c = inst.status.conditions?.find((x) => x.type === type && x.status === 'True');
    if (!c) continue;
    const at = Date.parse(c.lastTransitionTime);
    d.metrics.phaseSeconds.observe({ phase }, Math.max(0, at - from) / 1000);
    from = at;
  }
  return done;
}
