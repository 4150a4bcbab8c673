// After the hand-off the Instance is the agent's (BlockDeviceMapping, Spawning, Active,
// Stopped): the operator only records how long each phase took, once per Instance, and sets
// the node-cleanup finalizer where an agent of an earlier release did not.
import {
  AGENT_PHASES,
  ConditionType,
  instanceRef,
  NODE_CLEANUP_FINALIZER,
  type Phase,
} from '@kova/crds';
import { done, type Result, type SyncContext } from '../sync-context.js';

/** The phase that ends when each condition turns True. */
const PHASE_ENDS: [Phase, string][] = [
  ['Scheduling', ConditionType.Scheduled],
  ['Networking', ConditionType.NetworkReady],
  ['BlockDeviceMapping', ConditionType.BlockDevicesReady],
  ['Spawning', ConditionType.Spawned],
];

export async function observeOnNode(ctx: SyncContext): Promise<Result> {
  await holdForEarlierAgent(ctx);
  const { inst, d } = ctx;
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

/**
 * An agent of an earlier release does not set its node-cleanup finalizer (operators did, at
 * binding). While an upgrade has rolled the operator before every agent, the operator sets it
 * on an Instance such an agent builds, so a delete still waits for the node's teardown. An
 * agent of this release sets it before it reports any build phase: then this writes nothing.
 */
async function holdForEarlierAgent({ inst, d }: SyncContext): Promise<void> {
  const phase = inst.status?.phase;
  const has = inst.metadata.finalizers ?? [];
  if (!phase || !AGENT_PHASES.has(phase) || has.includes(NODE_CLEANUP_FINALIZER)) return;
  const rv = inst.metadata.resourceVersion as string;
  await d.patcher.setFinalizers(instanceRef(inst), rv, [...has, NODE_CLEANUP_FINALIZER]);
}
