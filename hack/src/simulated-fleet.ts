// Simulated hypervisors for operator tests and benchmarks: a Node, a Hypervisor with reported
// capacity and a heartbeat Lease per entry, as a node agent would keep them, with no agent.
import {
  CoordinationV1Api,
  CoreV1Api,
  V1MicroTime,
  type KubeConfig,
} from '@kubernetes/client-node';
import { Applier, apiStatus, logger } from '@kova/controller-kit';
import { AGENT_FIELD_MANAGER, API_VERSION, DEFAULT_SYSTEM_NAMESPACE, PLURAL } from '@kova/crds';

const log = logger('simulated-fleet');

export interface SimulatedHost {
  name: string;
  vcpus: number;
  memoryMiB: number;
  diskGiB: number;
  zone?: string;
  arch?: 'x86_64' | 'aarch64';
  labels?: Record<string, string>;
  /** The underlay address its agent reports for VXLAN (Hypervisor status.tunnelAddress). */
  tunnelAddress?: string;
}

async function inBatches<T>(
  items: T[],
  size: number,
  fn: (item: T) => Promise<unknown>,
): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(fn));
}

export class SimulatedFleet {
  private readonly core: CoreV1Api;
  private readonly leases: CoordinationV1Api;
  private readonly applier: Applier;
  private readonly alive = new Set<string>();
  private readonly skew = new Map<string, number>();
  /** The status each host reported, re-sent whole: apply drops the fields a write omits. */
  private readonly statuses = new Map<string, object>();
  private timer: NodeJS.Timeout | undefined;
  private renewing: Promise<void> | undefined;

  constructor(
    kc: KubeConfig,
    readonly namespace = DEFAULT_SYSTEM_NAMESPACE,
  ) {
    this.core = kc.makeApiClient(CoreV1Api);
    this.leases = kc.makeApiClient(CoordinationV1Api);
    this.applier = new Applier(kc, AGENT_FIELD_MANAGER);
  }

  async create(hosts: SimulatedHost[], concurrency = 20): Promise<void> {
    await this.core
      .createNamespace({ body: { metadata: { name: this.namespace } } })
      .catch((err) => {
        if (apiStatus(err) !== 409) throw err;
      });
    await inBatches(hosts, concurrency, (h) => this.register(h));
  }

  /** Renews every live host's Lease on this period, as agents do; a failed round is logged. */
  startHeartbeats(intervalMs = 10_000): void {
    this.timer = setInterval(() => {
      this.renewing ??= this.renewAll()
        .catch((err) => log.warn('heartbeat round failed', { error: err as Error }))
        .finally(() => (this.renewing = undefined));
    }, intervalMs);
    this.timer.unref();
  }

  /** The host stops renewing its Lease, like a node whose agent died. */
  stopHeartbeat(name: string): void {
    this.alive.delete(name);
  }

  /** The host renews its Lease again, like a node whose agent came back. */
  resumeHeartbeat(name: string): void {
    this.alive.add(name);
  }

  /** The host writes renewTime from a clock this far off ours (negative: behind). */
  setClockSkew(name: string, ms: number): void {
    this.skew.set(name, ms);
  }

  /** Stops heartbeating, after the round in flight: none may reach a control plane stopped next. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.renewing;
  }

  private async register(h: SimulatedHost): Promise<void> {
    const labels = {
      'kubernetes.io/hostname': h.name,
      ...(h.zone ? { 'topology.kubernetes.io/zone': h.zone } : {}),
      ...h.labels,
    };
    await this.core
      .createNode({
        body: {
          metadata: { name: h.name, labels },
          status: { conditions: [{ type: 'Ready', status: 'True' }] },
        },
      })
      .catch((err) => {
        if (apiStatus(err) !== 409) throw err;
      });
    await this.core.patchNodeStatus({
      name: h.name,
      body: [
        {
          op: 'replace',
          path: '/status/conditions',
          value: [
            {
              type: 'Ready',
              status: 'True',
              reason: 'Simulated',
              message: 'simulated node',
              lastHeartbeatTime: new Date(),
              lastTransitionTime: new Date(),
            },
          ],
        },
      ],
    });
    await this.applier.apply(
      { apiVersion: API_VERSION, kind: 'Hypervisor', metadata: { name: h.name }, spec: {} },
      PLURAL.Hypervisor,
    );
    const status = {
      hypervisorType: 'test',
      architecture: h.arch ?? 'x86_64',
      availabilityZone: h.zone ?? '',
      capacity: { vcpus: h.vcpus, memoryMiB: h.memoryMiB, diskGiB: h.diskGiB },
      ...(h.tunnelAddress ? { tunnelAddress: h.tunnelAddress } : {}),
    };
    this.statuses.set(h.name, status);
    await this.applier.applyStatus(this.hypervisorRef(h.name), status);
    this.alive.add(h.name);
    await this.renew(h.name);
  }

  /** Reports the domains defined on the host, as an agent does after its garbage collection. */
  async reportDomains(name: string, uids: string[]): Promise<void> {
    const status = { ...this.statuses.get(name), domains: uids };
    await this.applier.applyStatus(this.hypervisorRef(name), status);
  }

  /** Reports the host's tunnel endpoint (undefined: none), as an agent does once it has one. */
  async reportTunnelAddress(name: string, tunnelAddress: string | undefined): Promise<void> {
    const { tunnelAddress: _old, ...rest } = (this.statuses.get(name) ?? {}) as Record<
      string,
      unknown
    >;
    const status = tunnelAddress ? { ...rest, tunnelAddress } : rest;
    this.statuses.set(name, status);
    await this.applier.applyStatus(this.hypervisorRef(name), status);
  }

  private hypervisorRef(name: string) {
    return { apiVersion: API_VERSION, kind: 'Hypervisor', plural: PLURAL.Hypervisor, name };
  }

  private async renewAll(): Promise<void> {
    await inBatches([...this.alive], 50, (n) => this.renew(n));
  }

  private async renew(name: string): Promise<void> {
    const renewTime = new V1MicroTime(Date.now() + (this.skew.get(name) ?? 0));
    const spec = { holderIdentity: name, leaseDurationSeconds: 40, renewTime };
    try {
      const current = await this.leases.readNamespacedLease({ name, namespace: this.namespace });
      await this.leases.replaceNamespacedLease({
        name,
        namespace: this.namespace,
        body: { ...current, spec: { ...current.spec, ...spec } },
      });
    } catch (err) {
      if (apiStatus(err) !== 404) throw err;
      await this.leases.createNamespacedLease({
        namespace: this.namespace,
        body: { metadata: { name, namespace: this.namespace }, spec },
      });
    }
  }
}
