// The agent's half of an Instance's life. A handler per phase (phases/) returns a typed result;
// this applies it: writes the agent's status in one place (status.ts) when it changed, runs the
// next phase's handler, or undoes a failed build and reports its fault.
//
// The hand-off (see @kova/crds contract.ts): the operator owns Scheduling, Networking, Error and
// Deleting. The agent takes an Instance over when it is in Networking on this node with an
// address for every network (interfacesAllocated), then writes BlockDeviceMapping → Spawning →
// Active or Stopped. A build fault goes to status.fault (node = this node), which the operator
// answers by rescheduling (retryable) or failing the Instance.
import type { SyncResult } from '@kova/controller-kit';
import { ConditionType, interfacesAllocated, type Fault } from '@kova/crds';
import { undoSteps, type NodeStep, type StepContext } from './build/step.js';
import { keyOf, type AgentDeps, type Instance } from './deps.js';
import type { BuildFault } from './errors.js';
import { ActionHandler } from './phases/action.js';
import { blockDevices, handoff, spawn } from './phases/build.js';
import { failed, TeardownHandler } from './phases/lifecycle.js';
import { PowerHandler } from './phases/power.js';
import type { PhaseResult } from './phases/result.js';
import { StatusWriter, type StatusChange } from './status.js';

export type { AgentDeps, Instance } from './deps.js';
export { powerStateOf, removeDomain } from './domain-removal.js';

type HandlerKey = 'Handoff' | 'BlockDeviceMapping' | 'Spawning' | 'Power' | 'Error' | 'Deleting';

/** At most this many phases in one sync (Networking → … → Active and a look at its power). */
const MAX_PHASES_PER_SYNC = 6;

interface PendingFault {
  fault: BuildFault;
  condition: string;
  undo: readonly NodeStep[];
}

export class AgentReconciler {
  private readonly status: StatusWriter;
  private readonly power = new PowerHandler();
  private readonly teardown = new TeardownHandler();
  private readonly actions: ActionHandler;
  private readonly handlers: Record<HandlerKey, (c: StepContext) => Promise<PhaseResult>>;
  /** Faults caught and not yet written (undo or the write failed): the next sync finishes them. */
  private readonly pending = new Map<string, PendingFault>();
  /**
   * Faults written, by the resourceVersion of the write, until the informer shows it; after
   * that status.fault is the durable mark (and once the operator clears it, the Instance is
   * built afresh, even when it comes back to this node).
   */
  private readonly written = new Map<string, string>();
  /** Syncs in progress (the agent has more than one queue), so a delete can stop a build. */
  private readonly inFlight = new Map<string, { aborted: boolean }>();

  constructor(private readonly d: AgentDeps) {
    this.status = new StatusWriter(d.patcher, d.logger);
    this.actions = new ActionHandler(d.actions, d.patcher);
    this.handlers = {
      Handoff: handoff,
      BlockDeviceMapping: blockDevices,
      Spawning: spawn,
      Power: (c) => this.power.handle(c),
      Error: failed,
      Deleting: (c) => this.teardown.handle(c),
    };
  }

  async sync(key: string): Promise<SyncResult | void> {
    const [namespace, name] = key.split('/') as [string, string];
    const inst = this.d.instances.get(name, namespace);
    if (!inst || inst.status?.nodeName !== this.d.config.nodeName) return this.forget(key);
    const uid = inst.metadata.uid;
    const build = this.inFlight.get(uid);
    if (build) {
      // One sync per Instance at a time, across the agent's queues; a delete stops the build.
      if (inst.metadata.deletionTimestamp) build.aborted = true;
      return { requeueAfterMs: 500 };
    }
    if (!inst.metadata.deletionTimestamp) {
      if (inst.status?.fault && inst.status.phase !== 'Error') {
        this.written.delete(uid);
        return;
      }
      if (olderThan(inst, this.written.get(uid))) return;
      this.written.delete(uid);
    }
    const flag = { aborted: false };
    this.inFlight.set(uid, flag);
    try {
      const pending = inst.metadata.deletionTimestamp ? undefined : this.pending.get(uid);
      const c = this.context(inst, flag);
      return await (pending ? this.finishFault(c, pending) : this.run(c));
    } finally {
      this.inFlight.delete(uid);
    }
  }

  private async run(c: StepContext): Promise<SyncResult | void> {
    for (let i = 0; i < MAX_PHASES_PER_SYNC; i++) {
      const key = handlerKey(c.inst);
      if (!key) return;
      // An InstanceAction in flight takes the power handler's place until it has finished.
      const action = key === 'Power' ? this.actions.inFlight(c) : undefined;
      const r = action ? await this.actions.handle(c, action) : await this.handlers[key](c);
      if (r.kind === 'failed') return this.finishFault(c, this.remember(c.inst, r));
      if (r.kind !== 'complete') {
        const written = await this.status.apply(c.inst, r.status);
        if (!written) return; // the Instance is gone
        c.inst = written;
      }
      // A finished action's result is written once the power handler has reported the guest.
      if (key === 'Power' && !action) await this.actions.settle(c);
      if (r.kind !== 'continue') return after(r.requeueAfterMs);
    }
  }

  private remember(inst: Instance, r: Extract<PhaseResult, { kind: 'failed' }>): PendingFault {
    const p = { fault: r.fault, condition: r.condition, undo: r.undo };
    this.pending.set(inst.metadata.uid, p);
    this.d.logger.warn('build step failed', {
      instance: keyOf(inst),
      condition: r.condition,
      error: r.fault,
      retryable: r.fault.retryable,
    });
    return p;
  }

  /**
   * Undoes what the build made, then writes the fault. Either may fail (libvirtd away, a 409, an
   * API blip): the fault stays pending and the queue retries; only a written fault stops syncs.
   */
  private async finishFault(c: StepContext, p: PendingFault): Promise<void> {
    const uid = c.inst.metadata.uid;
    await undoSteps(p.undo, c);
    const f = p.fault;
    const fault: Fault = {
      reason: f.reason,
      message: f.message,
      node: this.d.config.nodeName,
      retryable: f.retryable,
      time: new Date().toISOString(),
    };
    const written = await this.status.apply(c.inst, faultStatus(p.condition, fault));
    this.pending.delete(uid);
    if (!written) return;
    this.written.set(uid, written.metadata.resourceVersion as string);
    this.d.events.record(c.inst, 'Warning', f.reason, f.message);
  }

  private context(inst: Instance, flag: { aborted: boolean }): StepContext {
    const c: StepContext = {
      d: this.d,
      inst,
      aborted: () => flag.aborted,
      scratch: {},
      report: async (change) => {
        const written = await this.status.apply(c.inst, change);
        if (written) c.inst = written;
        return !!written;
      },
    };
    return c;
  }

  private forget(key: string): void {
    for (const uid of [...this.pending.keys(), ...this.written.keys()]) {
      if (!this.d.instances.list().some((i) => i.metadata.uid === uid)) {
        this.pending.delete(uid);
        this.written.delete(uid);
      }
    }
    this.d.logger.debug('instance not on this node; nothing to do', { instance: key });
  }
}

/**
 * The fault, the failed step's condition, and nothing that no longer holds: the operator
 * releases the addresses and nothing runs (the build was undone).
 */
function faultStatus(condition: string, fault: Fault): StatusChange {
  const conditions: NonNullable<StatusChange['conditions']> = [
    { type: condition, status: 'False', reason: fault.reason, message: fault.message },
    { type: ConditionType.Ready, status: 'False', reason: fault.reason, message: fault.message },
  ];
  if (condition !== ConditionType.NetworkReady)
    conditions.push({
      type: ConditionType.NetworkReady,
      status: 'False',
      reason: 'BuildFailed',
      message: `the build failed (${fault.reason}); the addresses go back to the operator`,
    });
  return { fault, powerState: null, launchedAt: null, domainUUID: null, conditions };
}

function handlerKey(inst: Instance): HandlerKey | undefined {
  if (inst.metadata.deletionTimestamp) return 'Deleting';
  switch (inst.status?.phase) {
    case 'Networking':
      return interfacesAllocated(inst) ? 'Handoff' : undefined;
    case 'BlockDeviceMapping':
      return 'BlockDeviceMapping';
    case 'Spawning':
      return 'Spawning';
    case 'Active':
    case 'Stopped':
      return 'Power';
    case 'Error':
      return 'Error';
    default:
      return undefined;
  }
}

const after = (ms: number | undefined): SyncResult | void =>
  ms === undefined ? undefined : { requeueAfterMs: ms };

/** Whether the informer's copy predates the write at `rv` (etcd revisions grow). */
function olderThan(inst: Instance, rv: string | undefined): boolean {
  if (rv === undefined) return false;
  try {
    return BigInt(inst.metadata.resourceVersion as string) < BigInt(rv);
  } catch {
    return inst.metadata.resourceVersion !== rv;
  }
}
