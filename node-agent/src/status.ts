// The one place the agent's part of an Instance's status is computed and written. Handlers say
// what changed; this computes the agent's fields from the Instance as read and writes only when
// the result differs from what the API server holds, as a JSON merge patch carrying the
// resourceVersion it was computed from (the operator writes the same way), so neither side
// overwrites a change it has not seen and no field ownership is forced. Conditions the agent
// writes carry the generation they were set against.
import { apiStatus, type Logger, type Patcher } from '@kova/controller-kit';
import {
  AGENT_PHASES,
  instanceRef,
  setCondition,
  type Condition,
  type Fault,
  type InstanceStatus,
  type Phase,
  type PowerState,
  type Task,
} from '@kova/crds';
import { ConditionType } from '@kova/crds';
import { keyOf, type Instance } from './deps.js';

/** Conditions the node agent owns; the operator owns Scheduled. */
export const AGENT_CONDITIONS: ReadonlySet<string> = new Set([
  ConditionType.NetworkReady,
  ConditionType.BlockDevicesReady,
  ConditionType.Spawned,
  ConditionType.Ready,
]);

type RestartBackoff = NonNullable<InstanceStatus['restartBackoff']>;

/** Fields to change; `null` removes a field, an absent key keeps the current value. */
export interface StatusChange {
  phase?: Phase;
  powerState?: PowerState | null;
  domainUUID?: string | null;
  launchedAt?: string | null;
  buildStartedAt?: string;
  restartBackoff?: RestartBackoff | null;
  fault?: Fault;
  /** The InstanceAction in progress (Nova's task_state) and its name; null when none is. */
  task?: Task | null;
  action?: string | null;
  /** The agent acted on this generation of the spec (runStrategy). */
  observedGeneration?: number;
  conditions?: Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>[];
}

/** The agent's full status after `change`, from the Instance as last read. */
export function agentStatus(
  inst: Instance,
  change: StatusChange,
  now = new Date(),
): InstanceStatus {
  const s: InstanceStatus = inst.status ?? {};
  const generation = inst.metadata.generation;
  const conditions = (s.conditions ?? []).filter(
    (c) => AGENT_CONDITIONS.has(c.type) && !change.conditions?.some((n) => n.type === c.type),
  );
  for (const c of change.conditions ?? [])
    conditions.push(
      setCondition(
        s.conditions,
        { ...c, ...(generation !== undefined ? { observedGeneration: generation } : {}) },
        now,
      ),
    );
  conditions.sort((a, b) => a.type.localeCompare(b.type));
  const phase = change.phase ?? (s.phase && AGENT_PHASES.has(s.phase) ? s.phase : undefined);
  const pick = <K extends keyof StatusChange & keyof InstanceStatus>(k: K) =>
    k in change ? change[k] : s[k];
  const out: InstanceStatus = { ...(phase ? { phase } : {}) };
  for (const k of [
    'powerState',
    'domainUUID',
    'launchedAt',
    'buildStartedAt',
    'restartBackoff',
    'fault',
    'task',
    'action',
    'observedGeneration',
  ] as const) {
    const v = pick(k);
    if (v !== undefined && v !== null) Object.assign(out, { [k]: v });
  }
  out.conditions = conditions;
  return out;
}

/** The agent's fields of the status as it is now, to compare with a computed one. */
export function currentAgentStatus(inst: Instance): InstanceStatus {
  return agentStatus(inst, {});
}

export function sameStatus(a: InstanceStatus, b: InstanceStatus): boolean {
  const norm = (s: InstanceStatus) =>
    JSON.stringify(s, (_k, v: unknown) =>
      v && typeof v === 'object' && !Array.isArray(v)
        ? Object.fromEntries(Object.entries(v).sort(([x], [y]) => x.localeCompare(y)))
        : v,
    );
  return norm(a) === norm(b);
}

/**
 * The merge patch that makes the Instance's status `next` in the agent's fields: a field the
 * change removes is null; conditions go whole (the operator's kept), as merge patches replace
 * lists.
 */
export function statusPatch(
  inst: Instance,
  next: InstanceStatus,
  change: StatusChange,
): Record<string, unknown> {
  const body: Record<string, unknown> = { ...next };
  for (const [k, v] of Object.entries(change)) if (v === null) body[k] = null;
  const others = (inst.status?.conditions ?? []).filter((c) => !AGENT_CONDITIONS.has(c.type));
  body.conditions = [...others, ...(next.conditions ?? [])];
  return body;
}

export class StatusWriter {
  constructor(
    private readonly patcher: Pick<Patcher, 'mergeStatus'>,
    private readonly logger: Logger,
  ) {}

  /**
   * Applies the change if it changes anything. Resolves to the Instance as written (or as read,
   * when nothing changed), or undefined when the Instance is gone.
   */
  async apply(inst: Instance, change: StatusChange): Promise<Instance | undefined> {
    const next = agentStatus(inst, change);
    if (sameStatus(next, currentAgentStatus(inst))) return inst;
    try {
      const rv = inst.metadata.resourceVersion as string;
      const body = statusPatch(inst, next, change);
      return (await this.patcher.mergeStatus(instanceRef(inst), rv, body)) as Instance;
    } catch (err) {
      if (apiStatus(err) === 404) return undefined;
      if (apiStatus(err) === 409)
        this.logger.debug('stale view of the Instance; retrying', { instance: keyOf(inst) });
      throw err;
    }
  }
}
