// The operator's pending changes to one Instance's status, saved once per sync by the
// reconciler (never by a handler) and only when something changed. Saved as a JSON merge patch
// carrying the resourceVersion the sync read, so a decision made on a stale view is refused
// (409) and retried on a fresh one; no field ownership is forced from another writer.
// The same draft serves every kind whose status has conditions (Instances, Networks).
import { setCondition, type Condition, type InstanceStatus } from '@kova/crds';

/** A status with conditions and an observed generation, as every kova status has. */
export interface StatusShape {
  conditions?: Condition[];
  observedGeneration?: number;
}
type StatusField<S> = Exclude<keyof S, 'conditions' | 'observedGeneration'>;
type ConditionChange = Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>;

export class StatusDraft<S extends StatusShape = InstanceStatus> {
  private readonly changes = new Map<StatusField<S>, unknown>();
  private conditions: Condition[];
  private conditionsChanged = false;

  constructor(private readonly inst: { metadata: { generation?: number }; status?: S }) {
    this.conditions = [...(inst.status?.conditions ?? [])];
  }

  get phase(): S extends InstanceStatus ? InstanceStatus['phase'] : never {
    return this.get('phase' as StatusField<S>) as never;
  }

  get<K extends StatusField<S>>(field: K): S[K] {
    if (this.changes.has(field)) return (this.changes.get(field) ?? undefined) as S[K];
    return this.inst.status?.[field] as S[K];
  }

  /** Sets a field; null removes it. Setting the value it already has changes nothing. */
  set<K extends StatusField<S>>(field: K, value: S[K] | null): this {
    const current = this.inst.status?.[field];
    if (JSON.stringify(current ?? null) === JSON.stringify(value ?? null))
      this.changes.delete(field);
    else this.changes.set(field, value);
    return this;
  }

  condition(type: string): Condition | undefined {
    return this.conditions.find((c) => c.type === type);
  }

  /** Sets a condition, stamped with the generation this sync acted on. */
  setCondition(next: ConditionChange): this {
    const prior = this.condition(next.type);
    const generation = this.inst.metadata.generation;
    const same =
      prior?.status === next.status &&
      prior.reason === next.reason &&
      prior.message === next.message &&
      prior.observedGeneration === generation;
    if (same) return this;
    const updated = { ...setCondition(this.conditions, next), observedGeneration: generation };
    this.conditions = [...this.conditions.filter((c) => c.type !== next.type), updated];
    this.conditionsChanged = true;
    return this;
  }

  /** Stamps the condition with this generation if it carries an older one (kubectl wait). */
  restamp(type: string): this {
    const c = this.condition(type);
    const generation = this.inst.metadata.generation;
    if (!c || c.observedGeneration === generation) return this;
    this.conditions = this.conditions.map((x) =>
      x.type === type ? { ...x, observedGeneration: generation } : x,
    );
    this.conditionsChanged = true;
    return this;
  }

  get dirty(): boolean {
    return this.changes.size > 0 || this.conditionsChanged;
  }

  /**
   * The merge patch: changed fields, null for removed ones, the whole conditions list, and —
   * where the operator is the one acting on the spec — the generation it acted on.
   */
  patch(actedOnSpec: boolean): Record<string, unknown> {
    const body: Record<string, unknown> = Object.fromEntries(this.changes);
    if (this.conditionsChanged) body.conditions = this.conditions;
    if (actedOnSpec) body.observedGeneration = this.inst.metadata.generation;
    return body;
  }
}
