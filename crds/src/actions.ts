// Day-2 actions (InstanceAction), written down once: which action makes sense in which state of
// an Instance (Nova's check_instance_state), what the Instance's status.task says while it runs,
// and the reasons an action ends with. The operator refuses with these at once; the node agent
// checks again against what libvirt says before it acts.
import type { PowerState } from './contract.js';
import type { IInstance, IInstanceAction } from './generated/compute.kova.dev/v1alpha1/index.js';

export type ActionSpec = IInstanceAction['spec'];
export type ActionKind = ActionSpec['action'];
export type ActionStatus = NonNullable<IInstanceAction['status']>;
export type ActionPhase = NonNullable<ActionStatus['phase']>;
export type ActionStep = NonNullable<ActionStatus['steps']>[number];
export type Task = NonNullable<NonNullable<IInstance['status']>['task']>;
export type RunStrategy = NonNullable<IInstance['spec']['runStrategy']>;

/** An InstanceAction as read from the API: name, namespace and uid are always set there. */
export type InstanceActionObject = IInstanceAction & {
  metadata: { name: string; namespace: string; uid: string; creationTimestamp?: string | Date };
};

export const ActionReason = {
  Accepted: 'Accepted',
  Running: 'Running',
  Succeeded: 'Succeeded',
  InstanceNotFound: 'InstanceNotFound',
  InstanceDeleting: 'InstanceDeleting',
  InvalidState: 'InvalidState',
  RunStrategyConflict: 'RunStrategyConflict',
  ActionInProgress: 'ActionInProgress',
  NodeUnreachable: 'NodeUnreachable',
  NotTakenUp: 'NotTakenUp',
  InstanceReplaced: 'InstanceReplaced',
  DomainMissing: 'DomainMissing',
  StepFailed: 'StepFailed',
  StepTimeout: 'StepTimeout',
  // Console sessions.
  WaitingForClient: 'WaitingForClient',
  Unauthorized: 'Unauthorized',
  ConsoleBusy: 'ConsoleBusy',
  ConsoleTimeout: 'ConsoleTimeout',
  ConsoleUnavailable: 'ConsoleUnavailable',
  AgentRestarted: 'AgentRestarted',
  InternalError: 'InternalError',
} as const;

export interface Refusal {
  reason: string;
  message: string;
}

/** How an action (or a console session) ended, before it is written to its status. */
export type ActionOutcome = { ok: true; message: string } | ({ ok: false } & Refusal);

/** The status that records an outcome: the action's end. */
export function finishedStatus(o: ActionOutcome, at = new Date()): ActionStatus {
  return {
    phase: o.ok ? 'Succeeded' : 'Failed',
    reason: o.ok ? ActionReason.Succeeded : o.reason,
    message: o.message,
    completionTime: at.toISOString(),
  };
}

/**
 * Console sessions (Console, ConsoleLog) run beside power actions: they neither wait for one in
 * flight nor hold one up, and set no task.
 */
export const isSession = (spec: ActionSpec) =>
  spec.action === 'Console' || spec.action === 'ConsoleLog';

/** What status.task says while an action runs (Nova's task states); none for a session. */
export function taskOf(spec: ActionSpec): Task | undefined {
  switch (spec.action) {
    case 'Start':
      return 'PoweringOn';
    case 'Stop':
      return 'PoweringOff';
    case 'Reboot':
      return spec.hard ? 'RebootingHard' : 'Rebooting';
    case 'Pause':
      return 'Pausing';
    case 'Unpause':
      return 'Unpausing';
    case 'Rebuild':
      return 'Rebuilding';
    default:
      return undefined;
  }
}

export const isFinished = (phase: ActionPhase | undefined) =>
  phase === 'Succeeded' || phase === 'Failed';

/** Power states in which the guest runs (a paused guest is in memory, not running code). */
const ON: ReadonlySet<PowerState> = new Set(['Running', 'Paused', 'Suspended', 'NoState']);

/**
 * Why `spec` cannot be carried out on an Instance in state (`phase`, `power`, runStrategy), or
 * undefined when it can. The state is the Instance's status as last reported.
 */
export function actionRefusal(
  spec: ActionSpec,
  state: { phase?: string; power?: string; runStrategy?: RunStrategy; name: string },
): Refusal | undefined {
  const { phase, power, name } = state;
  const strategy = state.runStrategy ?? 'Always';
  if (phase !== 'Active' && phase !== 'Stopped')
    return invalid(
      `Instance ${name} is in phase ${phase ?? 'Scheduling'}; ${spec.action} needs an Active or Stopped Instance`,
    );
  if (spec.action === 'Rebuild' || spec.action === 'ConsoleLog') return undefined;
  const on = power !== undefined && ON.has(power as PowerState);
  switch (spec.action) {
    case 'Start':
      if (strategy === 'Always' || strategy === 'Halted')
        return conflict(
          strategy,
          name,
          'start',
          strategy === 'Always' ? 'it runs by itself' : 'it stays off',
        );
      return on ? invalid(`Instance ${name} is already running (${power})`) : undefined;
    case 'Stop':
      if (strategy === 'Always' || strategy === 'Halted')
        return conflict(
          strategy,
          name,
          'stop',
          strategy === 'Always' ? 'it would be started again' : 'it is off already',
        );
      // A crashed guest is off, but RerunOnFailure would restart it: stopping it makes sense.
      return on || power === 'Crashed'
        ? undefined
        : invalid(`Instance ${name} is not running (${power ?? 'no power state'})`);
    case 'Reboot':
      if (power === 'Running') return undefined;
      if (spec.hard && power === 'Paused') return undefined;
      return invalid(
        `Instance ${name} is ${power ?? 'not running'}; ${spec.hard ? 'a hard reboot needs it Running or Paused' : 'a soft reboot needs it Running (a hard one also takes Paused)'}`,
      );
    case 'Pause':
      return power === 'Running'
        ? undefined
        : invalid(`Instance ${name} is ${power ?? 'not running'}; Pause needs it Running`);
    case 'Console':
      return on
        ? undefined
        : invalid(
            `Instance ${name} is ${power ?? 'not running'}; its serial console exists while it runs (ConsoleLog reads what it printed)`,
          );
    case 'Unpause':
      return power === 'Paused'
        ? undefined
        : invalid(`Instance ${name} is ${power ?? 'not running'}; Unpause needs it Paused`);
  }
}

const invalid = (message: string): Refusal => ({ reason: ActionReason.InvalidState, message });

function conflict(strategy: RunStrategy, name: string, verb: string, why: string): Refusal {
  return {
    reason: ActionReason.RunStrategyConflict,
    message: `Instance ${name} has runStrategy ${strategy}, so ${why}: to ${verb} it by action, set spec.runStrategy to Manual or RerunOnFailure (or change runStrategy itself)`,
  };
}
