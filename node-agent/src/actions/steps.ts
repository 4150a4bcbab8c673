// The steps of an InstanceAction on the node, and the plan of each action. A step is started,
// then looked at until libvirt (or the disk) shows its effect (`done`): a slow one — the guest
// shutting down — never holds a worker. Every start is idempotent, because an agent restarted
// mid-action starts the step it finds Running again. Nova's soft reboot is the model: shut down,
// wait, power off after the timeout, power on again.
import type { ActionSpec } from '@kova/crds';
import { runSteps, type StepContext } from '../build/step.js';
import {
  disksStep,
  plugNetworksStep,
  recordedBase,
  startStep,
  waitRunningStep,
} from '../build/steps.js';
import { lookupDomain } from '../domain-removal.js';
import { BuildFault } from '../errors.js';
import { DomainState, type Domain } from '../libvirt/index.js';
import { lv, tolerateInvalid } from '../libvirt-call.js';

export type StepName =
  'Shutdown' | 'PowerOff' | 'PowerOn' | 'Pause' | 'Unpause' | 'ReplaceRootDisk';

export interface ActionStepDef {
  name: StepName;
  start(c: StepContext): Promise<void>;
  /** Whether the step's effect is there. */
  done(c: StepContext): Promise<boolean>;
  /** A step that may outlast the shutdown timeout takes this way out (says what it did). */
  overdue?(c: StepContext): Promise<string>;
}

/** States in which the guest runs code and can answer the power button. */
const RUNNING: ReadonlySet<number> = new Set([DomainState.RUNNING, DomainState.BLOCKED]);

async function domain(c: StepContext): Promise<Domain> {
  const conn = await c.d.session.conn();
  const dom = await lv(c.d.metrics, 'lookupByUUID', () => lookupDomain(conn, c.inst.metadata.uid));
  if (!dom) throw new BuildFault('DomainMissing', 'the domain is not defined on the node', true);
  return dom;
}

async function stateOf(c: StepContext): Promise<number> {
  const dom = await domain(c);
  return (await lv(c.d.metrics, 'getState', () => dom.getState())).state;
}

const inState =
  (...states: number[]) =>
  async (c: StepContext) =>
    states.includes(await stateOf(c));

/** Calls `act` on the domain unless it is already in `target` (a restarted step, a retry). */
const unless =
  (target: number, op: string, act: (d: Domain) => Promise<void>) => async (c: StepContext) => {
    const dom = await domain(c);
    if ((await lv(c.d.metrics, 'getState', () => dom.getState())).state !== target)
      await lv(c.d.metrics, op, () => act(dom));
  };

const powerOff = unless(DomainState.SHUTOFF, 'destroy', (d) => tolerateInvalid(d.destroy()));

const root = (c: StepContext) => c.d.paths.instanceFile(c.inst.metadata.uid, 'root.qcow2');
/** Where the old root disk waits while the new one is made, to be put back if that fails. */
const replaced = (c: StepContext) =>
  c.d.paths.instanceFile(c.inst.metadata.uid, 'root.replaced.qcow2');

const STEPS: Record<StepName, ActionStepDef> = {
  Shutdown: {
    name: 'Shutdown',
    start: unless(DomainState.SHUTOFF, 'shutdown', (d) => tolerateInvalid(d.shutdown())),
    done: inState(DomainState.SHUTOFF),
    async overdue(c) {
      await powerOff(c);
      const s = Math.round(c.d.config.shutdownTimeoutMs / 1000);
      return `the guest did not shut down within ${s}s; powered it off`;
    },
  },
  PowerOff: { name: 'PowerOff', start: powerOff, done: inState(DomainState.SHUTOFF) },
  PowerOn: {
    name: 'PowerOn',
    // After a node reboot the managed bridges and kova's guard rules are gone: plug first.
    // startStep starts only a domain that is not running.
    start: (c) => runSteps([plugNetworksStep, startStep, waitRunningStep], c),
    done: async (c) => RUNNING.has(await stateOf(c)),
  },
  Pause: {
    name: 'Pause',
    start: unless(DomainState.PAUSED, 'suspend', (d) => d.suspend()),
    done: inState(DomainState.PAUSED),
  },
  Unpause: {
    name: 'Unpause',
    start: unless(DomainState.RUNNING, 'resume', (d) => d.resume()),
    done: async (c) => RUNNING.has(await stateOf(c)),
  },
  ReplaceRootDisk: {
    name: 'ReplaceRootDisk',
    // The recorded image is made sure of first (fetched again if the cache lost it), so a failed
    // download or a changed Image leaves the old disk in place. The old disk is moved aside, not
    // deleted, until the new one exists; ephemeral, swap and the config drive (identity,
    // addresses) stay.
    async start(c) {
      const h = c.d.host;
      // Never under a live QEMU (a runStrategy that started it, an agent that lost the plan).
      if ((await stateOf(c)) !== DomainState.SHUTOFF)
        throw new BuildFault(
          'DomainRunning',
          'the domain runs; its disk is not replaced under it',
          true,
        );
      c.scratch.base = await recordedBase(c);
      if ((await h.exists(root(c))) && !(await h.exists(replaced(c))))
        await h.rename(root(c), replaced(c));
      try {
        await runSteps([disksStep({ createRoot: true })], c);
      } catch (err) {
        if (!(await h.exists(root(c)))) await h.rename(replaced(c), root(c));
        throw err;
      }
      await h.removeFile(replaced(c));
    },
    // Done when start() returns: it runs to the end or throws. An agent restarted mid-step
    // starts it again, which finishes a half-made replacement (or, if the first one had
    // finished, makes another fresh disk: the same result).
    done: async () => true,
  },
};

export const stepDef = (name: string): ActionStepDef | undefined =>
  (STEPS as Record<string, ActionStepDef>)[name];

/**
 * The steps of an action, given the domain's state now. A guest that runs code is asked to shut
 * down; one that cannot answer the power button (paused, suspended, shutting down, crashed) is
 * powered off. What ran before a Rebuild runs after it; a stopped one stays stopped (as Nova).
 */
export function planOf(spec: ActionSpec, state: number): StepName[] {
  const stop: StepName[] =
    state === DomainState.SHUTOFF ? [] : RUNNING.has(state) ? ['Shutdown'] : ['PowerOff'];
  const wasOn = state !== DomainState.SHUTOFF && state !== DomainState.CRASHED;
  switch (spec.action) {
    case 'Start':
      return ['PowerOn'];
    case 'Stop':
      return stop;
    case 'Reboot':
      return spec.hard ? ['PowerOff', 'PowerOn'] : ['Shutdown', 'PowerOn'];
    case 'Pause':
      return ['Pause'];
    case 'Unpause':
      return ['Unpause'];
    case 'Rebuild':
      return [...stop, 'ReplaceRootDisk', ...(wasOn ? (['PowerOn'] as const) : [])];
    case 'Console':
    case 'ConsoleLog':
      // Sessions touch nothing of the guest's power; the console endpoint serves them.
      return [];
  }
}
