// A node step in the manner of flintlock's: an object that says whether its work is still to do
// (shouldDo, read from the node, so a restarted agent resumes where it stopped), does it, checks
// it took (verify) and can take it back (undo). A plan is the list of steps for one Instance and
// phase, rebuilt on every sync: nothing about progress is kept in memory.
import {
  flavorOf,
  imageRecord,
  type FlavorRecord,
  type IImage,
  type ImageRecord,
} from '@kova/crds';
import type { AgentDeps, Instance } from '../deps.js';
import { BuildFault } from '../errors.js';
import type { StatusChange } from '../status.js';

export interface StepContext {
  d: AgentDeps;
  /** The Instance as last read or written. */
  inst: Instance;
  /** Writes a status change at once (before acting on the guest); false if the Instance is gone. */
  report: (change: StatusChange) => Promise<boolean>;
  /** Set when the Instance is deleted meanwhile: the plan stops at the next step. */
  aborted: () => boolean;
  /** What earlier steps found out for later ones (the cached image's path). */
  scratch: { base?: string; abandoned?: boolean };
}

export interface NodeStep {
  /** Metric label and log field. */
  readonly name: string;
  shouldDo(c: StepContext): Promise<boolean>;
  do(c: StepContext): Promise<void>;
  /** Throws a BuildFault when the step's effect is not there after do(). */
  verify(c: StepContext): Promise<void>;
  /** Removes what do() made; safe to run when do() never ran. */
  undo(c: StepContext): Promise<void>;
}

export class BuildAborted extends Error {
  constructor() {
    super('the Instance is being deleted; build abandoned');
    this.name = 'BuildAborted';
  }
}

/** Runs the steps still to do, in order, timing each. */
export async function runSteps(steps: readonly NodeStep[], c: StepContext): Promise<void> {
  for (const step of steps) {
    if (c.aborted() || c.scratch.abandoned) throw new BuildAborted();
    if (!(await step.shouldDo(c))) continue;
    const end = c.d.metrics.stepSeconds.startTimer({ step: step.name });
    try {
      await step.do(c);
      await step.verify(c);
      end({ result: 'ok' });
    } catch (err) {
      end({ result: 'error' });
      throw err;
    }
  }
}

/** Runs independent lines of steps side by side; once every line has ended, its first failure is thrown. */
export async function runSideBySide(
  lines: readonly (readonly NodeStep[])[],
  c: StepContext,
): Promise<void> {
  const ended = await Promise.allSettled(lines.map((line) => runSteps(line, c)));
  const failed = ended.find((e): e is PromiseRejectedResult => e.status === 'rejected');
  if (failed) throw failed.reason;
}

/** Undoes the steps in reverse order; the first failure stops it (the caller retries). */
export async function undoSteps(steps: readonly NodeStep[], c: StepContext): Promise<void> {
  for (const step of [...steps].reverse()) await step.undo(c);
}

/**
 * What the Instance was given at binding (status.flavor, status.image) and the Image it names,
 * which still says where the content comes from (source, kernel, initrd). An Instance bound
 * before the record existed falls back to its Flavor and Image as they are now.
 */
export function refsOf(
  d: AgentDeps,
  inst: Instance,
): { flavor: FlavorRecord; image: IImage; disk: ImageRecord } {
  const flavor = flavorOf(inst, d.flavors);
  const image = d.images.get(inst.spec.image);
  if (!flavor)
    throw new BuildFault(
      'FlavorNotFound',
      `Flavor ${inst.spec.flavor} does not exist and the Instance has no status.flavor record`,
      false,
    );
  if (!image)
    throw new BuildFault('ImageNotFound', `Image ${inst.spec.image} does not exist`, false);
  return { flavor, image, disk: inst.status?.image ?? imageRecord(image) };
}
