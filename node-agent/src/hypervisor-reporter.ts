// Keeps this node's Hypervisor object and heartbeat Lease current: capacity from libvirt and
// the state dir's disk, what the Instances here were given, versions, zone, cached images.
import {
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  V1MicroTime,
  type KubeConfig,
} from '@kubernetes/client-node';
import { Applier, apiStatus, type Logger } from '@kova/controller-kit';
import {
  API_VERSION,
  flavorDiskGiB,
  flavorOf,
  GROUP,
  PLURAL,
  VERSION,
  type IFlavor,
  type IInstance,
} from '@kova/crds';
import { statfs } from 'node:fs/promises';
import { arch } from 'node:os';
import type { AgentConfig } from './config.js';
import type { LibvirtSession } from './host/libvirt-session.js';
import type { VirtTypeDecision } from './host/virt-type.js';
import type { ImageCache } from './steps/image-cache.js';

const LEASE_SECONDS = 40;

export class HypervisorReporter {
  private readonly leases: CoordinationV1Api;
  private readonly core: CoreV1Api;
  private readonly custom: CustomObjectsApi;
  private timers: NodeJS.Timeout[] = [];
  private lastHeartbeat = 0;

  constructor(
    kc: KubeConfig,
    private readonly config: AgentConfig,
    private readonly applier: Applier,
    private readonly session: LibvirtSession,
    private readonly virtType: VirtTypeDecision,
    private readonly instances: { list(): readonly IInstance[] },
    private readonly flavors: { get(name: string): IFlavor | undefined },
    private readonly cache: ImageCache,
    private readonly logger: Logger,
  ) {
    this.leases = kc.makeApiClient(CoordinationV1Api);
    this.core = kc.makeApiClient(CoreV1Api);
    this.custom = kc.makeApiClient(CustomObjectsApi);
  }

  /** Registers the Hypervisor, reports once, then renews the Lease and the report periodically. */
  async start(): Promise<void> {
    await this.ensureHypervisor();
    // Heartbeat first: the scheduler takes a hypervisor with capacity but no fresh Lease as down.
    await this.heartbeat();
    await this.report();
    this.timers.push(
      setInterval(
        () =>
          void this.heartbeat().catch((err) =>
            this.logger.warn('heartbeat failed', { error: err as Error }),
          ),
        this.config.heartbeatMs,
      ),
    );
    this.timers.push(
      setInterval(
        () =>
          void this.report().catch((err) =>
            this.logger.warn('hypervisor report failed', { error: err as Error }),
          ),
        this.config.resyncMs,
      ),
    );
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
  }

  heartbeatAgeMs(): number {
    return Date.now() - this.lastHeartbeat;
  }

  async report(): Promise<void> {
    const conn = await this.session.conn();
    const [info, versions, disk, zone, cached, domains] = await Promise.all([
      conn.nodeInfo(),
      conn.versions(),
      statfs(this.config.stateDir),
      this.zone(),
      this.cache.list(),
      conn.listAllDomains(),
    ]);
    const capacity = {
      vcpus: info.cpus,
      memoryMiB: Math.floor(info.memoryKiB / 1024),
      diskGiB: Math.floor((disk.blocks * disk.bsize) / 2 ** 30),
    };
    const allocated = { vcpus: 0, memoryMiB: 0, diskGiB: 0 };
    const here = this.instances.list();
    for (const inst of here) {
      // What it was given at binding: a Flavor deleted or recreated since changes nothing here.
      const f = flavorOf(inst, this.flavors);
      if (!f) continue;
      allocated.vcpus += f.vcpus;
      allocated.memoryMiB += f.memoryMiB;
      allocated.diskGiB += flavorDiskGiB(f);
    }
    await this.applier.applyStatus(this.ref, {
      hypervisorType: this.virtType.virtType,
      hypervisorTypeProbe: { probe: this.virtType.probe, reason: this.virtType.reason },
      architecture: arch() === 'arm64' ? 'aarch64' : 'x86_64',
      availabilityZone: zone,
      tunnelAddress: this.config.tunnelAddress,
      libvirtVersion: versions.libvirt,
      qemuVersion: versions.type === 'QEMU' ? versions.hypervisor : '',
      capacity,
      allocated,
      summary: {
        vcpus: `${allocated.vcpus}/${capacity.vcpus}`,
        memoryMiB: `${allocated.memoryMiB}/${capacity.memoryMiB}`,
      },
      instanceCount: here.length,
      domains: domains.map((d) => d.uuid).sort(),
      imagesCached: cached,
    });
  }

  private get ref() {
    return {
      apiVersion: API_VERSION,
      kind: 'Hypervisor',
      plural: PLURAL.Hypervisor,
      name: this.config.nodeName,
    };
  }

  /** Creates the Hypervisor if missing; its spec belongs to admins, so we never write it after. */
  private async ensureHypervisor(): Promise<void> {
    const body = {
      apiVersion: API_VERSION,
      kind: 'Hypervisor',
      metadata: { name: this.config.nodeName },
      spec: {},
    };
    await this.custom
      .createClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: PLURAL.Hypervisor,
        body,
      })
      .catch((err) => {
        if (apiStatus(err) !== 409) throw err;
      });
  }

  private async zone(): Promise<string> {
    try {
      const node = await this.core.readNode({ name: this.config.nodeName });
      return node.metadata?.labels?.['topology.kubernetes.io/zone'] ?? '';
    } catch (err) {
      if (apiStatus(err) === 404) return '';
      throw err;
    }
  }

  private async heartbeat(): Promise<void> {
    const { nodeName: name, systemNamespace: namespace } = this.config;
    const spec = {
      holderIdentity: name,
      leaseDurationSeconds: LEASE_SECONDS,
      renewTime: new V1MicroTime(),
    };
    try {
      const current = await this.leases.readNamespacedLease({ name, namespace });
      await this.leases.replaceNamespacedLease({
        name,
        namespace,
        body: { ...current, spec: { ...current.spec, ...spec } },
      });
    } catch (err) {
      if (apiStatus(err) !== 404) throw err;
      await this.leases.createNamespacedLease({
        namespace,
        body: { metadata: { name, namespace }, spec },
      });
    }
    this.lastHeartbeat = Date.now();
  }
}
