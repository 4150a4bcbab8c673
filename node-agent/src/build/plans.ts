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

/**
 * Whether a (re)defined domain stays off: Halted, Manual (nothing starts by itself once built),
 * or stopped by a Stop action (Ready reason PoweredOff). A new Instance is always booted unless
 * Halted.
 */
const keptOff = (inst: Instance, built: boolean) => {
  const strategy = inst.spec.runStrategy;
  if (strategy === 'Halted') return true;
  if (!built) return false;
  const ready = inst.status?.conditions?.find((c) => c.type === 'Ready')?.reason;
  return strategy === 'Manual' || ready === 'PoweredOff';
};
const power = (inst: Instance, built: boolean) =>
  keptOff(inst, built) ? [] : [startStep, waitRunningStep];

/** Networking → BlockDeviceMapping: the one place a build plugs networking. */
export const handoffPlan = (): NodeStep[] => [plugNetworksStep];

/** BlockDeviceMapping → Spawning: the disks (after their image) and the config drive, side by side. */
export const blockDevicesLines = (): NodeStep[][] => [
  [imageStep, disksStep({ createRoot: true })],
  [configDriveStep],
];
export const blockDevicesPlan = (): NodeStep[] => blockDevicesLines().flat();

/** Spawning → Active, or Stopped without a start under runStrategy Halted. */
export const spawnPlan = (inst: Instance): NodeStep[] => [defineStep, ...power(inst, false)];

/** What a failed build takes back: everything it made on the node, newest first. */
export const buildUndoPlan = (): NodeStep[] => [...blockDevicesPlan(), defineStep, startStep];

/**
 * An Active or Stopped Instance whose domain vanished: define it again around the disks it has.
 * Never creates a root disk and is never undone; starts it only if its runStrategy would.
 */
export const respawnPlan = (inst: Instance): NodeStep[] => [
  plugNetworksStep,
  disksStep({ createRoot: false }),
  configDriveStep,
  defineStep,
  ...power(inst, true),
];
