// Which steps each part of an Instance's life runs on the node, planned per Instance and sync.
import type { Instance } from '../deps.js';
import type { NodeStep } from './step.js';
import {
  configDriveStep,
  defineStep,
  disksStep,
  imageStep,
  plugNetworksStep,
  startStep,
  waitRunningStep,
} from './steps.js';

const halted = (inst: Instance) => inst.spec.runStrategy === 'Halted';
const power = (inst: Instance) => (halted(inst) ? [] : [startStep, waitRunningStep]);

/** Networking → BlockDeviceMapping: the one place a build plugs networking. */
export const handoffPlan = (): NodeStep[] => [plugNetworksStep];

/** BlockDeviceMapping → Spawning. */
export const blockDevicesPlan = (): NodeStep[] => [
  imageStep,
  disksStep({ createRoot: true }),
  configDriveStep,
];

/** Spawning → Active, or Stopped without a start under runStrategy Halted. */
export const spawnPlan = (inst: Instance): NodeStep[] => [defineStep, ...power(inst)];

/** What a failed build takes back: everything it made on the node, newest first. */
export const buildUndoPlan = (): NodeStep[] => [...blockDevicesPlan(), defineStep, startStep];

/**
 * An Active or Stopped Instance whose domain vanished: define it again around the disks it has.
 * Never creates a root disk and is never undone; honours Halted (defined, not started).
 */
export const respawnPlan = (inst: Instance): NodeStep[] => [
  plugNetworksStep,
  disksStep({ createRoot: false }),
  configDriveStep,
  defineStep,
  ...power(inst),
];
