// Operator settings, from environment variables (the Helm chart sets them), with Nova's
// defaults where Nova has one.
import { envNumber } from '@kova/controller-kit';
import { DEFAULT_SYSTEM_NAMESPACE } from '@kova/crds';
import type { AllocationRatios, WeigherMultipliers } from './scheduler/types.js';

export interface OperatorConfig {
  systemNamespace: string;
  defaultRatios: AllocationRatios;
  multipliers: WeigherMultipliers;
  hostSubsetSize: number;
  /** Nova's scheduler max_attempts: placements tried before an Instance goes to Error. */
  maxAttempts: number;
  /** A hypervisor whose heartbeat Lease is older than this is down. */
  heartbeatTimeoutMs: number;
  /** Build failures within this window count against a host in the build-failure weigher. */
  buildFailureWindowMs: number;
  /** An Instance on a hypervisor down this long is deleted without waiting for its agent. */
  deleteWithNodeDownAfterMs: number;
  /** How often addresses held for a node that was down are checked (and orphans swept). */
  heldAddressCheckMs: number;
  /** Whether a hypervisor needs a Ready, schedulable Node of its name (false for simulations). */
  requireNode: boolean;
  workers: number;
  /** The range managed Networks' VXLAN identifiers are picked from (lowest free first). */
  vniMin: number;
  vniMax: number;
  /**
   * A Network's status follows changes of its nodes and their tunnel endpoints (what agents
   * build overlays from) this soon, and changes of its address counts (allocated, available,
   * holders: what people read) this lazily; a burst of bindings is one status write per delay,
   * never one per binding. A Network being deleted follows its holders at the short delay.
   */
  networkNodesDelayMs: number;
  networkCountsDelayMs: number;
  /** Leader election: a crashed leader's successor waits at most this long. */
  leaderLeaseMs: number;
  healthPort: number;
  identity: string;
  /**
   * Apply kova's CRDs (shipped in the image) at start: Helm installs a chart's crds/ once and
   * never upgrades them, so an upgraded operator would otherwise run against old schemas.
   */
  manageCrds: boolean;
  /** Finished InstanceActions kept per Instance (its history); older ones are deleted. */
  actionHistoryLimit: number;
  /** Finished InstanceActions are deleted this long after they finished. */
  actionHistoryMaxAgeMs: number;
}

const num = envNumber;

export function configFromEnv(): OperatorConfig {
  return {
    systemNamespace: process.env.KOVA_SYSTEM_NAMESPACE ?? DEFAULT_SYSTEM_NAMESPACE,
    defaultRatios: {
      cpu: num('KOVA_CPU_ALLOCATION_RATIO', 4.0),
      ram: num('KOVA_RAM_ALLOCATION_RATIO', 1.0),
      disk: num('KOVA_DISK_ALLOCATION_RATIO', 1.0),
    },
    multipliers: {
      ram: num('KOVA_RAM_WEIGHT_MULTIPLIER', 1.0),
      cpu: num('KOVA_CPU_WEIGHT_MULTIPLIER', 1.0),
      disk: num('KOVA_DISK_WEIGHT_MULTIPLIER', 1.0),
      buildFailure: num('KOVA_BUILD_FAILURE_WEIGHT_MULTIPLIER', 10.0),
      softAffinity: num('KOVA_SOFT_AFFINITY_WEIGHT_MULTIPLIER', 1.0),
      softAntiAffinity: num('KOVA_SOFT_ANTI_AFFINITY_WEIGHT_MULTIPLIER', 1.0),
    },
    hostSubsetSize: num('KOVA_HOST_SUBSET_SIZE', 1),
    maxAttempts: num('KOVA_MAX_ATTEMPTS', 3),
    heartbeatTimeoutMs: num('KOVA_HEARTBEAT_TIMEOUT_SECONDS', 40) * 1000,
    buildFailureWindowMs: num('KOVA_BUILD_FAILURE_WINDOW_SECONDS', 600) * 1000,
    deleteWithNodeDownAfterMs: num('KOVA_DELETE_NODE_DOWN_AFTER_SECONDS', 300) * 1000,
    heldAddressCheckMs: num('KOVA_HELD_ADDRESS_CHECK_SECONDS', 30) * 1000,
    requireNode: (process.env.KOVA_REQUIRE_NODE ?? 'true') !== 'false',
    workers: num('KOVA_WORKERS', 16),
    vniMin: num('KOVA_VNI_MIN', 1000),
    vniMax: num('KOVA_VNI_MAX', 16_777_215),
    networkNodesDelayMs: num('KOVA_NETWORK_NODES_DELAY_MS', 500),
    networkCountsDelayMs: num('KOVA_NETWORK_COUNTS_DELAY_MS', 5000),
    leaderLeaseMs: num('KOVA_LEADER_LEASE_SECONDS', 15) * 1000,
    healthPort: num('KOVA_HEALTH_PORT', 8080),
    identity: process.env.POD_NAME ?? process.env.HOSTNAME ?? `kova-operator-${process.pid}`,
    manageCrds: process.env.KOVA_MANAGE_CRDS === 'true',
    actionHistoryLimit: num('KOVA_ACTION_HISTORY_LIMIT', 50),
    actionHistoryMaxAgeMs: num('KOVA_ACTION_HISTORY_MAX_AGE_HOURS', 720) * 3_600_000,
  };
}
