// The operator's sync of one Instance, read top to bottom: read the view, pick the handler for the Instance's state from the table, run it, save
// the status it drafted once (only if it changed), then record its Events. Every write carries
// the resourceVersion of the view it was decided on, so a stale decision is refused (409) and
// retried on a fresh view.
import { apiStatus, type SyncResult } from '@kova/controller-kit';
import { ConditionType, instanceRef, interfacesAllocated, type InstanceObject } from '@kova/crds';
import { handleAgentFault } from './handlers/agent-fault.js';
import { fillMissingRecord } from './handlers/bound-record.js';
import { finalize } from './handlers/deleting.js';
import { failed } from './handlers/failed.js';
import { allocateRemaining } from './handlers/networking.js';
import { observeOnNode } from './handlers/on-node.js';
import { schedule } from './handlers/scheduling.js';
import { StatusDraft } from './status-draft.js';
import type { Handler, ReconcilerDeps, Result, SyncContext } from './sync-context.js';

/** Where an Instance stands from the operator's side; each has one handler. */
export type OperatorState =
  'Deleting' | 'Scheduling' | 'Networking' | 'AgentFault' | 'Failed' | 'OnNode';

export const HANDLERS: Record<OperatorState, Handler> = {
  Deleting: finalize,
  Scheduling: schedule,
  Networking: allocateRemaining,
  AgentFault: handleAgentFault,
  Failed: failed,
  OnNode: observeOnNode,
};

export function stateOf(inst: InstanceObject): OperatorState {
  const s = inst.status;
  if (inst.metadata.deletionTimestamp) return 'Deleting';
  if (!s?.phase || s.phase === 'Scheduling') return 'Scheduling';
  if (s.phase === 'Error') return 'Failed';
  if (s.fault?.node && s.fault.node === s.nodeName) return 'AgentFault';
  if (s.phase === 'Networking' && !interfacesAllocated(inst)) return 'Networking';
  return 'OnNode';
}

export class InstanceReconciler {
  constructor(private readonly d: ReconcilerDeps) {}

  async sync(key: string): Promise<SyncResult | void> {
    const [namespace, name] = key.split('/') as [string, string];
    const inst = this.d.state.instances.get(name, namespace);
    if (!inst) return this.forgetGone(key);
    try {
      const state = stateOf(inst);
      const ctx: SyncContext = { inst, status: new StatusDraft(inst), d: this.d, events: [] };
      if (BOUND_STATES.has(state)) fillMissingRecord(ctx);
      const result = await HANDLERS[state](ctx);
      if (result.kind !== 'stale') await this.save(ctx, state);
      for (const e of ctx.events) this.d.events.record(inst, e.type, e.reason, e.message);
      return toSyncResult(result);
    } catch (err) {
      // Deleted while we worked on a cached copy: its delete event releases what it held.
      if (apiStatus(err) !== 404) throw err;
      this.d.logger.info('not found while syncing; the Instance is likely gone', {
        key,
        error: err as Error,
      });
    }
  }

  /** The Instance is gone from the API: nothing it held may stay claimed or allocated. */
  private async forgetGone(key: string): Promise<void> {
    for (const uid of this.d.state.takeTombstones(key)) {
      this.d.state.claims.release(uid);
      this.d.observedActive.delete(uid);
      await this.d.allocator.release(uid);
    }
  }

  private async save(ctx: SyncContext, state: OperatorState): Promise<void> {
    // Scheduled is the operator's in every state: it follows the spec's generation.
    if (state !== 'Deleting') ctx.status.restamp(ConditionType.Scheduled);
    if (!ctx.status.dirty && !generationBehind(ctx.inst, state)) return;
    const end = this.d.metrics.apiWriteSeconds.startTimer({ op: 'status' });
    const rv = ctx.inst.metadata.resourceVersion as string;
    try {
      const body = ctx.status.patch(OPERATOR_STATES.has(state));
      await this.d.patcher.mergeStatus(instanceRef(ctx.inst), rv, body);
    } catch (err) {
      await ctx.onSaveFailed?.(err);
      throw err;
    } finally {
      end();
    }
  }
}

/** States of an Instance bound to a node, whose status holds the record of what it was given. */
const BOUND_STATES: ReadonlySet<OperatorState> = new Set(['Networking', 'OnNode']);

/** States in which the operator acts on every spec change, so it records the generation. */
const OPERATOR_STATES: ReadonlySet<OperatorState> = new Set(['Scheduling', 'Networking', 'Failed']);

function generationBehind(inst: InstanceObject, state: OperatorState): boolean {
  return OPERATOR_STATES.has(state) && inst.status?.observedGeneration !== inst.metadata.generation;
}

function toSyncResult(result: Result): SyncResult | void {
  if (result.kind !== 'done') return { requeueAfterMs: result.afterMs };
}
