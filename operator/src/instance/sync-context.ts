// What a phase handler gets and returns. Handlers decide and call the API for what is not
// status (finalizers, address objects); the status they want goes into the draft, and the
// reconciler saves it once after the handler returns.
import type { EventRecorder, Logger, Patcher } from '@kova/controller-kit';
import type { InstanceObject } from '@kova/crds';
import type { ClusterState } from '../cluster-state.js';
import type { OperatorConfig } from '../config.js';
import type { AddressAllocator } from '../ipam/allocator.js';
import type { OperatorMetrics } from '../metrics.js';
import type { StatusDraft } from './status-draft.js';

export interface ReconcilerDeps {
  state: ClusterState;
  allocator: AddressAllocator;
  patcher: Patcher;
  events: EventRecorder;
  config: OperatorConfig;
  metrics: OperatorMetrics;
  logger: Logger;
  /** Instances whose boot was already measured (creation → Active). */
  observedActive: Set<string>;
}

export interface PendingEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface SyncContext {
  inst: InstanceObject;
  status: StatusDraft;
  d: ReconcilerDeps;
  /** Events are recorded after the status is saved, so none announces a change that failed. */
  events: PendingEvent[];
  /** Runs when saving the status failed: undo in-memory state the handler took (a claim). */
  onSaveFailed?: (err: unknown) => Promise<void>;
}

/**
 * What a handler tells the reconciler: `done` — nothing more until the Instance or what it
 * waits for changes (a status the handler moved on comes back as an informer event); `wait` —
 * look again after `afterMs` (waiting for something outside); `stale` — the view is behind a
 * write of ours: save nothing, look again soon.
 */
export type Result =
  { kind: 'done' } | { kind: 'wait'; afterMs: number } | { kind: 'stale'; afterMs: number };

export const done: Result = { kind: 'done' };
export const waitFor = (afterMs: number): Result => ({ kind: 'wait', afterMs });
export const staleView = (afterMs: number): Result => ({ kind: 'stale', afterMs });

export type Handler = (ctx: SyncContext) => Promise<Result>;

/** Waiting Instances are also retried on this period, in case a change was missed. */
export const RETRY_WAITING_MS = 30_000;
