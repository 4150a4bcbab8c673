export interface Resources {
  vcpus: number;
  memoryMiB: number;
  diskGiB: number;
}

export const noResources = (): Resources => ({ vcpus: 0, memoryMiB: 0, diskGiB: 0 });

export interface AllocationRatios {
  cpu: number;
  ram: number;
  disk: number;
}

/** What the scheduler knows about one hypervisor at decision time. */
export interface HostState {
  name: string;
  /** Undefined when the hypervisor can take work; otherwise why not (heartbeat stale, node not ready…). */
  down?: string;
  disabled: boolean;
  zone?: string;
  arch?: string;
  /** Labels of the hypervisor's Node, for spec.nodeSelector. */
  labels: Record<string, string>;
  capacity: Resources;
  reserved: Resources;
  ratios: AllocationRatios;
  /** Resources claimed by Instances bound here, including binds not yet seen by the informer. */
  used: Resources;
  /** Recent build failures on this host, for the build-failure weigher. */
  recentFailures: number;
  /** Members of each server group (namespace/name) placed here. */
  groupMembers: ReadonlyMap<string, number>;
}

export type GroupPolicy = 'affinity' | 'anti-affinity' | 'soft-affinity' | 'soft-anti-affinity';

/** What one Instance asks of a host. */
export interface RequestSpec {
  resources: Resources;
  arch: string;
  zone?: string;
  nodeSelector?: Record<string, string>;
  triedNodes: ReadonlySet<string>;
  group?: { key: string; policy: GroupPolicy; maxPerNode: number };
}

export interface WeigherMultipliers {
  ram: number;
  cpu: number;
  disk: number;
  buildFailure: number;
  softAffinity: number;
  softAntiAffinity: number;
}

/** Usable amount of one resource: capacity × ratio − reserved. */
export function limits(host: HostState): Resources {
  return {
    vcpus: host.capacity.vcpus * host.ratios.cpu - host.reserved.vcpus,
    memoryMiB: host.capacity.memoryMiB * host.ratios.ram - host.reserved.memoryMiB,
    diskGiB: host.capacity.diskGiB * host.ratios.disk - host.reserved.diskGiB,
  };
}

export function free(host: HostState): Resources {
  const l = limits(host);
  return {
    vcpus: l.vcpus - host.used.vcpus,
    memoryMiB: l.memoryMiB - host.used.memoryMiB,
    diskGiB: l.diskGiB - host.used.diskGiB,
  };
}
