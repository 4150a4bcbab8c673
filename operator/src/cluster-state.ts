// Everything the operator reads, cached by informers: Instances, the objects they name,
// Hypervisors with their Nodes and heartbeat Leases, and address allocations. From it come
// the host states the scheduler decides on.
import type { KubeConfig, V1Lease, V1Node } from '@kubernetes/client-node';
import { Informer, type InformerOptions, type Logger } from '@kova/controller-kit';
import {
  API_VERSION,
  PLURAL,
  type IFlavor,
  type IHypervisor,
  type IImage,
  type IInstance,
  type IIPAllocation,
  type INetwork,
  type IServerGroup,
  type KovaKind,
} from '@kova/crds';
import type { Registry } from 'prom-client';
import { Claims } from './claims.js';
import type { OperatorConfig } from './config.js';
import type { HostState, Resources } from './scheduler/types.js';

type CachedHost = HostState & { unreported?: string; nodeProblem?: string };

export type Instance = IInstance & { metadata: { name: string; namespace: string; uid: string } };

const kova = (kind: KovaKind) => ({ apiVersion: API_VERSION, kind, plural: PLURAL[kind] });

export class ClusterState {
  readonly instances: Informer<Instance>;
  readonly hypervisors: Informer<IHypervisor>;
  readonly flavors: Informer<IFlavor>;
  readonly images: Informer<IImage>;
  readonly networks: Informer<INetwork>;
  readonly serverGroups: Informer<IServerGroup>;
  readonly allocations: Informer<IIPAllocation>;
  readonly leases: Informer<V1Lease>;
  readonly nodes: Informer<V1Node> | undefined;
  readonly claims = new Claims();
  private readonly failures = new Map<string, number[]>();
  private readonly hosts = new Map<string, { versions: string; host: CachedHost }>();
  private readonly renewals = new Map<string, { version: string; at: number }>();

  constructor(
    kc: KubeConfig,
    private readonly config: OperatorConfig,
    logger?: Logger,
    registry?: Registry,
  ) {
    const opts: InformerOptions = { logger, registry };
    this.instances = new Informer(kc, kova('Instance'), opts);
    this.hypervisors = new Informer(kc, kova('Hypervisor'), opts);
    this.flavors = new Informer(kc, kova('Flavor'), opts);
    this.images = new Informer(kc, kova('Image'), opts);
    this.networks = new Informer(kc, kova('Network'), opts);
    this.serverGroups = new Informer(kc, kova('ServerGroup'), opts);
    this.allocations = new Informer(kc, kova('IPAllocation'), opts);
    this.leases = new Informer(
      kc,
      {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        plural: 'leases',
        namespace: config.systemNamespace,
      },
      opts,
    );
    this.nodes = config.requireNode
      ? new Informer(kc, { apiVersion: 'v1', kind: 'Node', plural: 'nodes' }, opts)
      : undefined;
  }

  private get all(): Pick<Informer<object>, 'start' | 'stop' | 'hasSynced'>[] {
    return [
      this.instances,
      this.hypervisors,
      this.flavors,
      this.images,
      this.networks,
      this.serverGroups,
      this.allocations,
      this.leases,
      ...(this.nodes ? [this.nodes] : []),
    ];
  }

  async start(): Promise<void> {
    await Promise.all(this.all.map((i) => i.start()));
  }

  async stop(): Promise<void> {
    await Promise.all(this.all.map((i) => i.stop()));
  }

  hasSynced(): boolean {
    return this.all.every((i) => i.hasSynced());
  }

  flavorResources(flavor: IFlavor): Resources {
    const s = flavor.spec;
    return {
      vcpus: s.vcpus,
      memoryMiB: s.memoryMiB,
      diskGiB: s.rootDiskGiB + (s.ephemeralGiB ?? 0) + Math.ceil((s.swapMiB ?? 0) / 1024),
    };
  }

  /** Rebuilds every claim and failure record from the Instances, as on start or on gaining leadership. */
  rebuild(): void {
    this.claims.clear();
    this.failures.clear();
    for (const inst of this.instances.list()) {
      const node = inst.status?.nodeName;
      const flavor = this.flavors.get(inst.spec.flavor);
      if (node && flavor)
        this.claims.set(inst.metadata.uid, {
          node,
          resources: this.flavorResources(flavor),
          group: groupKey(inst),
        });
      for (const a of inst.status?.attempts ?? [])
        if (a.time) this.recordFailure(a.node, Date.parse(a.time));
    }
  }

  recordFailure(node: string, at = Date.now()): void {
    const list = this.failures.get(node) ?? [];
    list.push(at);
    this.failures.set(node, list);
  }

  /**
   * The scheduler's view of every hypervisor. The objects are kept between decisions and only
   * their live fields refreshed: at 1,000 hypervisors, rebuilding them was most of a decision.
   */
  hostStates(now = Date.now()): HostState[] {
    return this.hypervisors.list().map((hv) => {
      const name = hv.metadata?.name as string;
      const host = this.hostOf(hv, name);
      const stale = now - this.renewedAt(name) > this.config.heartbeatTimeoutMs;
      host.down = host.unreported ?? (stale ? 'heartbeat stale' : undefined) ?? host.nodeProblem;
      host.used = this.claims.used(name);
      host.groupMembers = this.claims.groupMembers(name);
      host.recentFailures = this.recentFailures(name, now);
      return host;
    });
  }

  /** What changes only with the Hypervisor or its Node, rebuilt when their resourceVersions change. */
  private hostOf(hv: IHypervisor, name: string): CachedHost {
    const node = this.nodes?.get(name);
    const versions = `${hv.metadata?.resourceVersion}/${node?.metadata?.resourceVersion}`;
    const cached = this.hosts.get(name);
    if (cached?.versions === versions) return cached.host;
    const spec = hv.spec ?? {};
    const status = hv.status ?? {};
    const host: CachedHost = {
      name,
      unreported: status.capacity ? undefined : 'its agent has not reported capacity',
      nodeProblem: this.nodeProblem(node),
      disabled: spec.disabled ?? false,
      zone: status.availabilityZone || undefined,
      arch: status.architecture,
      labels: node?.metadata?.labels ?? hv.metadata?.labels ?? {},
      capacity: {
        vcpus: status.capacity?.vcpus ?? 0,
        memoryMiB: status.capacity?.memoryMiB ?? 0,
        diskGiB: status.capacity?.diskGiB ?? 0,
      },
      reserved: {
        vcpus: spec.reservedVCPUs ?? 0,
        memoryMiB: spec.reservedMemoryMiB ?? 512,
        diskGiB: spec.reservedDiskGiB ?? 0,
      },
      ratios: {
        cpu: spec.cpuAllocationRatio ?? this.config.defaultRatios.cpu,
        ram: spec.ramAllocationRatio ?? this.config.defaultRatios.ram,
        disk: spec.diskAllocationRatio ?? this.config.defaultRatios.disk,
      },
      used: this.claims.used(name),
      recentFailures: 0,
      groupMembers: this.claims.groupMembers(name),
    };
    this.hosts.set(name, { versions, host });
    return host;
  }

  /** When the hypervisor's heartbeat Lease was last renewed (epoch ms; 0 if never). */
  private renewedAt(name: string): number {
    const lease = this.leases.get(name, this.config.systemNamespace);
    const version = lease?.metadata?.resourceVersion ?? '';
    const cached = this.renewals.get(name);
    if (cached?.version === version) return cached.at;
    const at = lease?.spec?.renewTime
      ? new Date(lease.spec.renewTime as unknown as string).getTime()
      : 0;
    this.renewals.set(name, { version, at });
    return at;
  }

  private nodeProblem(node: V1Node | undefined): string | undefined {
    if (!this.config.requireNode) return undefined;
    if (!node) return 'no Node of that name';
    if (node.spec?.unschedulable) return 'node cordoned';
    const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
    return ready?.status === 'True' ? undefined : 'node not ready';
  }

  /** Milliseconds the hypervisor has been without a fresh heartbeat (0 while up). */
  downForMs(nodeName: string, now = Date.now()): number {
    return Math.max(0, now - this.renewedAt(nodeName) - this.config.heartbeatTimeoutMs);
  }

  private recentFailures(node: string, now: number): number {
    const list = this.failures.get(node);
    if (!list) return 0;
    const fresh = list.filter((t) => now - t < this.config.buildFailureWindowMs);
    if (fresh.length !== list.length) this.failures.set(node, fresh);
    return fresh.length;
  }
}

export function groupKey(inst: Instance): string | undefined {
  return inst.spec.serverGroup ? `${inst.metadata.namespace}/${inst.spec.serverGroup}` : undefined;
}
