// Node agent settings, from environment variables (the DaemonSet sets them).
import { envNumber } from '@kova/controller-kit';
import { DEFAULT_SYSTEM_NAMESPACE } from '@kova/crds';
import { hostname } from 'node:os';

export type VirtType = 'auto' | 'kvm' | 'qemu';

export interface AgentConfig {
  nodeName: string;
  libvirtUri: string;
  /** kvm, qemu (TCG), or auto: kvm when a probe shows /dev/kvm really runs guests. */
  virtType: VirtType;
  stateDir: string;
  systemNamespace: string;
  heartbeatMs: number;
  resyncMs: number;
  /** Grace period of a guest shutdown before the domain is destroyed. */
  shutdownTimeoutMs: number;
  /** A build (hand-off to running) taking longer fails with the retryable fault BuildTimedOut. */
  buildTimeoutMs: number;
  /** Domains with kova metadata and no Instance on this node are removed after this long. */
  orphanGraceMs: number;
  /** Cached image bases no Instance used for this long are removed. */
  imageTtlMs: number;
  healthPort: number;
  /**
   * Where health and metrics listen; unset: all addresses. The agent shares the node's network:
   * all addresses let Prometheus scrape it, 127.0.0.1 keeps both off the node's network (the
   * kubelet's probes still reach them).
   */
  healthAddress?: string;
  /** The node's underlay address for VXLAN; unset: the source address of its route to the API server. */
  tunnelAddress?: string;
  /** The console endpoint's TLS port (0: any free port, for several agents on one host). */
  consolePort: number;
  /**
   * The address the console endpoint listens on and clients are told to connect to; unset: the
   * tunnel address (the node's own), else 127.0.0.1.
   */
  consoleAddress?: string;
}

const num = envNumber;

export function configFromEnv(): AgentConfig {
  return {
    nodeName: process.env.KOVA_NODE_NAME ?? process.env.NODE_NAME ?? hostname(),
    libvirtUri: process.env.KOVA_LIBVIRT_URI ?? 'qemu:///system',
    virtType: (process.env.KOVA_VIRT_TYPE ?? 'auto') as VirtType,
    stateDir: process.env.KOVA_STATE_DIR ?? '/var/lib/kova',
    systemNamespace: process.env.KOVA_SYSTEM_NAMESPACE ?? DEFAULT_SYSTEM_NAMESPACE,
    heartbeatMs: num('KOVA_HEARTBEAT_SECONDS', 10) * 1000,
    resyncMs: num('KOVA_RESYNC_SECONDS', 30) * 1000,
    shutdownTimeoutMs: num('KOVA_SHUTDOWN_TIMEOUT_SECONDS', 60) * 1000,
    buildTimeoutMs: num('KOVA_BUILD_TIMEOUT_SECONDS', 900) * 1000,
    orphanGraceMs: num('KOVA_ORPHAN_GRACE_SECONDS', 60) * 1000,
    imageTtlMs: num('KOVA_IMAGE_TTL_SECONDS', 24 * 3600) * 1000,
    healthPort: num('KOVA_HEALTH_PORT', 8081),
    healthAddress: process.env.KOVA_HEALTH_ADDRESS || undefined,
    tunnelAddress: process.env.KOVA_TUNNEL_ADDRESS || undefined,
    consolePort: num('KOVA_CONSOLE_PORT', 8082),
    consoleAddress: process.env.KOVA_CONSOLE_ADDRESS || undefined,
  };
}
