// Deleting: phase Deleting first (Ready goes False), then wait for the agent to remove the
// domain and its disks (it lifts the node-cleanup finalizer); the Instance is then gone and its
// delete event releases the addresses and the claim (an operator finalizer set by earlier
// operators is lifted once they are released). A node down too long is not waited for; its
// addresses are then held for it until it is back, since its VM may still be running.
import {
  ConditionType,
  instanceRef,
  NODE_CLEANUP_FINALIZER,
  OPERATOR_FINALIZER,
  type InstanceObject,
} from '@kova/crds';
import { done, RETRY_WAITING_MS, waitFor, type Result, type SyncContext } from '../sync-context.js';

export async function finalize(ctx: SyncContext): Promise<Result> {
  const { inst, status } = ctx;
  const finalizers = inst.metadata.finalizers ?? [];
  const ours = [NODE_CLEANUP_FINALIZER, OPERATOR_FINALIZER].filter((f) => finalizers.includes(f));
  if (!ours.length) return done;
  if (status.phase !== 'Deleting') {
    status.set('phase', 'Deleting');
    status.setCondition({
      type: ConditionType.Ready,
      status: 'False',
      reason: 'Deleting',
      message: 'the Instance is being deleted',
    });
    return done;
  }
  if (ours.includes(NODE_CLEANUP_FINALIZER)) return awaitNodeCleanup(ctx);
  await releaseAndLift(ctx, inst);
  return done;
}

async function awaitNodeCleanup(ctx: SyncContext): Promise<Result> {
  const { inst, d } = ctx;
  const node = inst.status?.nodeName;
  const downFor = node ? d.state.downForMs(node) : Infinity;
  const limit = d.config.deleteWithNodeDownAfterMs;
  if (node && downFor < limit)
    return waitFor(Math.max(1000, Math.min(limit - downFor, RETRY_WAITING_MS)));
  if (node) {
    await d.allocator.holdForNode(inst.metadata.uid, node);
    ctx.events.push({
      type: 'Warning',
      reason: 'NodeDown',
      message:
        `hypervisor ${node} has been down for ${Math.round(downFor / 1000)}s; deleting without its agent. ` +
        `Its addresses stay held until the node is back, as its VM may still run there.`,
    });
  }
  const rest = (inst.metadata.finalizers ?? []).filter((f) => f !== NODE_CLEANUP_FINALIZER);
  await setFinalizers(ctx, inst, rest);
  return done;
}

async function releaseAndLift(ctx: SyncContext, inst: InstanceObject): Promise<void> {
  ctx.d.state.claims.release(inst.metadata.uid);
  await ctx.d.allocator.release(inst.metadata.uid);
  const rest = (inst.metadata.finalizers ?? []).filter((f) => f !== OPERATOR_FINALIZER);
  await setFinalizers(ctx, inst, rest);
}

async function setFinalizers(ctx: SyncContext, inst: InstanceObject, finalizers: string[]) {
  const end = ctx.d.metrics.apiWriteSeconds.startTimer({ op: 'finalizers' });
  try {
    await ctx.d.patcher.setFinalizers(
      instanceRef(inst),
      inst.metadata.resourceVersion as string,
      finalizers,
    );
  } finally {
    end();
  }
}
