// What a phase handler returns (Metal3's actionResult): the reconciler writes the status, once,
// and decides what runs next.
import type { BuildFault } from '../errors.js';
import type { NodeStep } from '../build/step.js';
import type { StatusChange } from '../status.js';

export type PhaseResult =
  /** Write the status and run the handler of the phase it leads to, in the same sync. */
  | { kind: 'continue'; status: StatusChange }
  /** Write the status (when it changed) and stop; look again after requeueAfterMs if set. */
  | { kind: 'update'; status: StatusChange; requeueAfterMs?: number }
  /** Nothing to write. */
  | { kind: 'complete'; requeueAfterMs?: number }
  /** A build step failed: undo what the build made, then report the fault. */
  | { kind: 'failed'; fault: BuildFault; condition: string; undo: readonly NodeStep[] };
