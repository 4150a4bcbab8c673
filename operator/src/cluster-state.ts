// Everything the operator reads, cached by informers: Instances, the objects they name,
// Hypervisors with their Nodes and heartbeat Leases, and address allocations. From it come
// the host states the scheduler decides on.
import {
  CustomObjectsApi,
  type KubeConfig,
  type V1Lease,
  type V1Node,
} from '@kubernetes/client-node';
import { apiStatus, Informer, type InformerOptions, type Logger } from '@kova/controller-kit';
import {
  API_VERSION,
  flavorDiskGiB,
  flavorOf,
  GROUP,
  PLURAL,
  VERSION,
  type IFlavor,
  type IHypervisor,
  type IImage,
  type InstanceObject,
  type IIPBlock,
  type INetwork,
  type IServerGroup,
  type KovaKind,
  type InstanceActionObject,
} from '@kova/crds';
import type { Registry } from 'prom-client';
import { Claims } from './claims.js';
import type { OperatorConfig } from './config.js';
import type { HostState, Resources } from './scheduler/types.js';

type DiskSizes = Parameters<typeof flavorDiskGiB>[0];
type CachedHost = HostState & { unreported?: string; nodeProblem?: string };

const kova = (kind: KovaKind) => ({ apiVersion: API_VERSION, kind, plural: PLURAL[kind] });

export class ClusterState {
  readonly instances: Informer<InstanceObject>;
  readonly hypervisors: Informer<IHypervisor>;
  readonly flavors: Informer<IFlavor>;
  readonly images: Informer<IImage>;
  readonly networks: Informer<INetwork>;
  readonly serverGroups: Informer<IServerGroup>;
  readonly blocks: Informer<IIPBlock>;
  readonly leases: Informer<V1Lease>;
  readonly actions: Informer<InstanceActionObject>;
  readonly nodes: Informer<V1Node> | undefined;
  readonly claims = new Claims();
  private readonly failures = new Map<string, number[]>();
  private readonly hosts = new Map<string, { versions: string; host: CachedHost }>();
  /** Per hypervisor: when this operator saw its Lease renewed, and since when it has been up. */
  private readonly renewals = new Map<string, { version: string; at: number; upSince: number }>();
  private readonly upHandlers: ((name: string) => void)[] = [];
  /** When this operator last saw each Hypervisor's object change (its agent's reports). */
  private readonly reports = new Map<string, number>();
  /** UIDs of deleted Instances by namespace/name, until their sync has released what they held. */
  private readonly tombstones = new Map<string, string[]>();
  private readonly custom: CustomObjectsApi;

  constructor(
    kc: KubeConfig,
    private readonly config: OperatorConfig,
    private readonly logger?: Logger,
    registry?: Registry,
  ) {
    const opts: InformerOptions = { logger, registry };
    this.custom = kc.makeApiClient(CustomObjectsApi);
    this.instances = new Informer(kc, kova('Instance'), opts);
    this.hypervisors = new Informer(kc, kova('Hypervisor'), opts);
    this.flavors = new Informer(kc, kova('Flavor'), opts);
    this.images = new Informer(kc, kova('Image'), opts);
    this.networks = new Informer(kc, kova('Network'), opts);
    this.serverGroups = new Informer(kc, kova('ServerGroup'), opts);
    this.blocks = new Informer(kc, kova('IPBlock'), opts);
    this.actions = new Informer(kc, kova('InstanceAction'), opts);
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
    this.leases.on((lease, type) => {
      if (type !== 'delete') this.observeLease(lease);
    });
    this.instances.on((inst, type) => this.observeInstance(inst, type));
    this.hypervisors.on((hv) => this.reports.set(hv.metadata?.name as string, Date.now()));
  }

  private get all(): Pick<Informer<object>, 'start' | 'stop' | 'hasSynced'>[] {
    return [
      this.instances,
      this.hypervisors,
      this.flavors,
      this.images,
      this.networks,
      this.serverGroups,
      this.blocks,
      this.leases,
      this.actions,
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
    return resourcesOf(flavor.spec);
  }

  /**
   * What a bound Instance takes on its hypervisor: the sizes recorded at its binding, never the
   * Flavor as it is now (deleted or recreated, it must not change the count).
   */
  boundResources(inst: InstanceObject): Resources | undefined {
    const sizes = flavorOf(inst, this.flavors);
    return sizes && resourcesOf(sizes);
  }

  /**
   * Keeps claims true to what the API server shows, between rebuilds: a bind seen in the view
   * is claimed (also one whose write failed on our side but reached the server); an Instance
   * seen unbound loses its claim unless it is our own bind still on its way.
   */
  private observeInstance(inst: InstanceObject, type: string): void {
    const uid = inst.metadata.uid;
    if (type === 'delete') {
      const key = `${inst.metadata.namespace}/${inst.metadata.name}`;
      this.tombstones.set(key, [...(this.tombstones.get(key) ?? []), uid]);
      return;
    }
    const node = inst.status?.nodeName;
    const resources = node ? this.boundResources(inst) : undefined;
    const claim = this.claims.get(uid);
    if (node && resources && !inst.metadata.deletionTimestamp) {
      this.claims.set(uid, { node, resources, group: groupKey(inst) });
    } else if (!node && claim && claim.pendingSince === undefined) {
      this.claims.release(uid);
    }
  }

  /** UIDs of Instances deleted under this namespace/name since the last call. */
  takeTombstones(key: string): string[] {
    const uids = this.tombstones.get(key) ?? [];
    this.tombstones.delete(key);
    return uids;
  }

  /** Whether the API server has this Instance (same uid) now, read fresh. */
  async exists(i: { namespace: string; name: string; uid: string }): Promise<boolean> {
    const fresh = await this.read(i.namespace, i.name);
    return fresh?.metadata.uid === i.uid;
  }

  private async read(namespace: string, name: string): Promise<InstanceObject | undefined> {
    const api = { group: GROUP, version: VERSION, plural: PLURAL.Instance, namespace, name };
    try {
      return (await this.custom.getNamespacedCustomObject(api)) as InstanceObject;
    } catch (err) {
      if (apiStatus(err) === 404) return undefined;
      throw err;
    }
  }

  /** The node the API server has the Instance bound to now (null: none), read fresh. */
  async boundNode(inst: InstanceObject): Promise<string | null> {
    const fresh = await this.read(inst.metadata.namespace, inst.metadata.name);
    if (fresh?.metadata.uid !== inst.metadata.uid) return null;
    return fresh.status?.nodeName ?? null;
  }

  /** Rebuilds every claim and failure record from the Instances, as on start or on gaining leadership. */
  rebuild(): void {
    this.claims.clear();
    this.failures.clear();
    this.tombstones.clear();
    for (const inst of this.instances.list()) {
      const node = inst.status?.nodeName;
      const resources = node ? this.boundResources(inst) : undefined;
      if (node && resources)
        this.claims.set(inst.metadata.uid, { node, resources, group: groupKey(inst) });
      else if (node)
        this.logger?.warn('a bound Instance is not counted on its hypervisor', {
          reason: 'FlavorRecordMissing',
          instance: `${inst.metadata.namespace}/${inst.metadata.name}`,
          node,
          message: `it has no status.flavor and Flavor ${inst.spec.flavor} is gone; recreate the Flavor with the sizes it was bound with`,
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

  /**
   * A heartbeat counts from when this operator saw the Lease change, never from the renewTime
   * the node wrote: a node clock behind ours would look down forever, one ahead alive forever.
   */
  private observeLease(lease: V1Lease): void {
    const name = lease.metadata?.name as string;
    const version = lease.metadata?.resourceVersion ?? '';
    const now = Date.now();
    const seen = this.renewals.get(name);
    if (seen?.version === version) return;
    // At first sight (an operator start) the node's renewTime is all there is: a node dead for
    // days must not look fresh. A clock ahead of ours counts as now; later renewals count when seen.
    const at = seen ? now : Math.min(now, renewTimeOf(lease));
    const wasDown = !seen || now - seen.at > this.config.heartbeatTimeoutMs;
    const up = now - at <= this.config.heartbeatTimeoutMs;
    this.renewals.set(name, { version, at, upSince: wasDown ? now : seen.upSince });
    if (wasDown && up) for (const cb of this.upHandlers) cb(name);
  }

  /** Calls `cb` when a hypervisor's heartbeat comes back (or is first seen fresh). */
  onHostUp(cb: (name: string) => void): void {
    this.upHandlers.push(cb);
  }

  /** When this operator last saw the hypervisor's heartbeat (epoch ms; 0 if never). */
  private renewedAt(name: string): number {
    return this.renewals.get(name)?.at ?? 0;
  }

  /**
   * Whether the node's agent, back after being down, has confirmed that the Instance's domain
   * is gone: a report it made since it came back no longer lists the domain. A node whose
   * Hypervisor an admin deleted (the node is gone for good) confirms it too.
   */
  domainGoneFrom(node: string, uid: string): boolean {
    const hv = this.hypervisors.get(node);
    if (!hv) return true;
    const seen = this.renewals.get(node);
    const up = this.upForMs(node) > 0 && seen !== undefined;
    const reportedSinceUp = up && (this.reports.get(node) ?? 0) > seen.upSince;
    const domains = hv.status?.domains;
    return reportedSinceUp && domains !== undefined && !domains.includes(uid);
  }

  /** Milliseconds the hypervisor has been up without a break in its heartbeat (0 while down). */
  upForMs(nodeName: string, now = Date.now()): number {
    const seen = this.renewals.get(nodeName);
    if (!seen || now - seen.at > this.config.heartbeatTimeoutMs) return 0;
    return now - seen.upSince;
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

function renewTimeOf(lease: V1Lease): number {
  const t = lease.spec?.renewTime as unknown as string | undefined;
  return t ? new Date(t).getTime() : 0;
}

function resourcesOf(s: { vcpus: number; memoryMiB: number } & DiskSizes): Resources {
  return { vcpus: s.vcpus, memoryMiB: s.memoryMiB, diskGiB: flavorDiskGiB(s) };
}

export function groupKey(inst: InstanceObject): string | undefined {
  return inst.spec.serverGroup ? `${inst.metadata.namespace}/${inst.spec.serverGroup}` : undefined;
}
