// The steps of an InstanceAction on the node, and the plan of each action. A step starts once
// (when it goes Running) and is then looked at until libvirt shows its effect (`done`): a slow
// one (the guest shutting down) never holds a worker, and an agent restarted mid-action resumes
// from the steps recorded in the action's status. Nova's soft reboot is the model: shut down,
// wait, power off after the timeout, power on again.
import type { ActionSpec } from '@kova/crds';
import { runSteps, type StepContext } from '../build/step.js';
import {
  disksStep,
  imageStep,
  plugNetworksStep,
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
  done(c: StepContext): Promise<boolean>;
  /** A step that can outlast the shutdown timeout takes this way out (says what it did). */
  overdue?(c: StepContext): Promise<string>;
}

const ON: ReadonlySet<number> = new Set([DomainState.RUNNING, DomainState.BLOCKED]);

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

const powerOff = async (c: StepContext) => {
  const dom = await domain(c);
  await tolerateInvalid(lv(c.d.metrics, 'destroy', () => dom.destroy()));
};

const STEPS: Record<StepName, ActionStepDef> = {
  Shutdown: {
    name: 'Shutdown',
    async start(c) {
      const dom = await domain(c);
      await tolerateInvalid(lv(c.d.metrics, 'shutdown', () => dom.shutdown()));
    },
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
    start: (c) => runSteps([plugNetworksStep, startStep, waitRunningStep], c),
    done: async (c) => ON.has(await stateOf(c)),
  },
  Pause: {
    name: 'Pause',
    async start(c) {
      const dom = await domain(c);
      await lv(c.d.metrics, 'suspend', () => dom.suspend());
    },
    done: inState(DomainState.PAUSED),
  },
  Unpause: {
    name: 'Unpause',
    async start(c) {
      const dom = await domain(c);
      await lv(c.d.metrics, 'resume', () => dom.resume());
    },
    done: async (c) => ON.has(await stateOf(c)),
  },
  ReplaceRootDisk: {
    name: 'ReplaceRootDisk',
    // The recorded image (status.image) is fetched again if the cache lost it; only the root
    // overlay goes: ephemeral, swap and the config drive (identity, addresses) stay.
    async start(c) {
      await c.d.host.removeFile(c.d.paths.instanceFile(c.inst.metadata.uid, 'root.qcow2'));
      await runSteps([imageStep, disksStep({ createRoot: true })], c);
    },
    done: (c) => c.d.host.exists(c.d.paths.instanceFile(c.inst.metadata.uid, 'root.qcow2')),
  },
};

export const stepDef = (name: string): ActionStepDef | undefined =>
  (STEPS as Record<string, ActionStepDef>)[name];

/** The steps of an action, given whether the guest is running (in memory) now. */
export function planOf(spec: ActionSpec, running: boolean): StepName[] {
  switch (spec.action) {
    case 'Start':
      return ['PowerOn'];
    case 'Stop':
      return ['Shutdown'];
    case 'Reboot':
      return spec.hard ? ['PowerOff', 'PowerOn'] : ['Shutdown', 'PowerOn'];
    case 'Pause':
      return ['Pause'];
    case 'Unpause':
      return ['Unpause'];
    case 'Rebuild':
      // As Nova: a stopped Instance is rebuilt and stays stopped.
      return running ? ['Shutdown', 'ReplaceRootDisk', 'PowerOn'] : ['ReplaceRootDisk'];
  }
}
