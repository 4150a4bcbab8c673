// The contract between the operator and the node agents, written down once: who moves an
// Instance through which phase, the condition types and reasons, finalizers and field managers.
import type { IInstance } from './generated/compute.kova.dev/v1alpha1/index.js';

export type InstanceStatus = NonNullable<IInstance['status']>;
export type Phase = NonNullable<InstanceStatus['phase']>;
export type PowerState = NonNullable<InstanceStatus['powerState']>;
export type Condition = NonNullable<InstanceStatus['conditions']>[number];
export type Interface = NonNullable<InstanceStatus['interfaces']>[number];
export type Fault = NonNullable<InstanceStatus['fault']>;

/**
 * Who moves an Instance through which phase. The operator sets Scheduling and Networking, binds
 * (status.nodeName) and allocates an address per network. The hand-off: once the Instance is
 * in Networking on a node with every address allocated (`interfacesAllocated`), that node's
 * agent plugs the interfaces and sets the phases below; the operator steps in again only for a
 * fault the agent reports (rescheduling, or Error) and for deletion (Deleting). Each writes
 * status as a merge patch carrying the resourceVersion it read, so neither overwrites a change
 * it has not seen.
 */
export const AGENT_PHASES: ReadonlySet<Phase> = new Set([
  'BlockDeviceMapping',
  'Spawning',
  'Active',
  'Stopped',
]);

export const ConditionType = {
  Scheduled: 'Scheduled',
  NetworkReady: 'NetworkReady',
  BlockDevicesReady: 'BlockDevicesReady',
  Spawned: 'Spawned',
  Ready: 'Ready',
} as const;

/**
 * Set at binding by earlier operators; no longer set (an Instance's addresses and claim are
 * released when it is gone, or by the operator's orphan sweep). The operator still lifts it from
 * Instances that carry it, once their addresses and claim are released.
 */
export const OPERATOR_FINALIZER = 'compute.kova.dev/operator';
/**
 * Set by the node agent at the hand-off, before it builds anything on the node; it removes it
 * once the domain and its disks are gone from the node.
 */
export const NODE_CLEANUP_FINALIZER = 'compute.kova.dev/node-cleanup';

export const OPERATOR_FIELD_MANAGER = 'kova-operator';
export const AGENT_FIELD_MANAGER = 'kova-node-agent';

/** Namespace of the agents' heartbeat Leases (one per node, named after it) and of the operator's leader Lease. */
export const DEFAULT_SYSTEM_NAMESPACE = 'kova-system';

/** Put on IPBlocks, so a Network's blocks are listed by label. */
export const NETWORK_LABEL = 'compute.kova.dev/network';

/** An Instance as read from the API: name, namespace and uid are always set there. */
export type InstanceObject = IInstance & {
  metadata: { name: string; namespace: string; uid: string };
};

/**
 * The hand-off from operator to agent: the operator has bound the Instance and allocated an
 * address for every network it asks for.
 */
export function interfacesAllocated(inst: IInstance): boolean {
  return (inst.status?.interfaces?.length ?? 0) === inst.spec.networks.length;
}

/** Disk a Flavor takes on a hypervisor: root + ephemeral + swap, in GiB. */
export function flavorDiskGiB(f: { rootDiskGiB: number; ephemeralGiB?: number; swapMiB?: number }) {
  return f.rootDiskGiB + (f.ephemeralGiB ?? 0) + Math.ceil((f.swapMiB ?? 0) / 1024);
}

/**
 * A condition with its lastTransitionTime kept when the status did not change, so transition
 * times mean what they say.
 */
export function setCondition(
  existing: Condition[] | undefined,
  next: Omit<Condition, 'lastTransitionTime'>,
  now = new Date(),
): Condition {
  const prior = existing?.find((c) => c.type === next.type);
  const lastTransitionTime =
    prior && prior.status === next.status ? prior.lastTransitionTime : now.toISOString();
  return { ...next, lastTransitionTime };
}

/**
 * A Network's life, decided by the operator alone: it picks the VNI, checks the Network against
 * the others (an overlapping CIDR or a bridge name another Network already uses is refused; the
 * older Network keeps working), lists the nodes with Instances on it and their tunnel endpoints,
 * and holds the Network while any Instance holds an address on it. Agents build a Network only
 * once `networkUsable` says so, and hand out no address before either.
 */
export const NETWORK_FINALIZER = 'compute.kova.dev/network-in-use';
export const NetworkReason = {
  Ready: 'Ready',
  CIDROverlap: 'CIDROverlap',
  BridgeConflict: 'BridgeConflict',
  VNIExhausted: 'VNIExhausted',
  /** Another, older Network has this Network's VNI recorded (restored or edited by hand). */
  VNIConflict: 'VNIConflict',
  InUse: 'InUse',
} as const;

type NetworkLike = {
  metadata?: { generation?: number; deletionTimestamp?: unknown };
  spec: { managed?: boolean };
  status?: { vni?: number; conditions?: Condition[] };
};

/** Ready, checked for the Network's current spec, and (when managed) given its VNI. */
export function networkUsable(net: NetworkLike): boolean {
  const ready = net.status?.conditions?.find((c) => c.type === ConditionType.Ready);
  return (
    ready?.status === 'True' &&
    (ready.observedGeneration ?? 0) >= (net.metadata?.generation ?? 0) &&
    (net.spec.managed === false || net.status?.vni !== undefined)
  );
}

/** Why a Network cannot be used yet, for the Instance or node fault that waits on it. */
export function networkNotUsableMessage(name: string, net: NetworkLike): string {
  const ready = net.status?.conditions?.find((c) => c.type === ConditionType.Ready);
  return ready?.status === 'False'
    ? `Network ${name} is not usable (${ready.reason}): ${ready.message}`
    : `Network ${name} has not been checked by the operator yet`;
}

/** Reasons for which the operator refuses a Network for good: no node may build it. */
const REFUSALS: ReadonlySet<string> = new Set([
  NetworkReason.CIDROverlap,
  NetworkReason.BridgeConflict,
  NetworkReason.VNIExhausted,
  NetworkReason.VNIConflict,
]);

/** Why the operator refused this Network, if it did (not merely "not checked yet"). */
export function networkRefusal(name: string, net: NetworkLike): string | undefined {
  const ready = net.status?.conditions?.find((c) => c.type === ConditionType.Ready);
  return ready?.status === 'False' && REFUSALS.has(ready.reason)
    ? `Network ${name} is refused (${ready.reason}): ${ready.message}`
    : undefined;
}
