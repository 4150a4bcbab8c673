// Fakes of libvirt, the API server and the host for the reconciler's unit tests: each records
// what it was asked to do, so a test states the expected actions (sample-controller style).
import { quietLogger } from '@kova/controller-kit';
import type { IFlavor, IImage, INetwork, InstanceStatus } from '@kova/crds';
import { Registry } from 'prom-client';
import type { AgentConfig } from './config.js';
import type { AgentDeps, HostOps, Instance } from './deps.js';
import { StatePaths } from './host/paths.js';
import {
  DomainState,
  ErrorCode,
  ShutoffReason,
  type Connection,
  type Domain,
  type LifecycleEventData,
} from './libvirt/index.js';
import { agentMetrics } from './metrics.js';

export const NODE = 'node-a';
export const UID = '6a1c0d2e-0000-4000-8000-00000000000a';

const libvirtError = (code: number, message: string) =>
  Object.assign(new Error(message), { code, domain: 0 });

export class FakeDomain implements Domain {
  state: number = DomainState.SHUTOFF;
  reason: number = ShutoffReason.UNKNOWN;
  /** Makes create() fail with this error once. */
  failCreate: Error | undefined;
  /** When set, shutdown() is only recorded: the guest ignores the button. */
  ignoreShutdown = true;
  constructor(
    readonly uuid: string,
    readonly name: string,
    private readonly conn: FakeConnection,
  ) {}
  async create() {
    this.conn.calls.push(`create ${this.uuid}`);
    if (this.failCreate) {
      const e = this.failCreate;
      this.failCreate = undefined;
      throw e;
    }
    if (this.state === DomainState.RUNNING)
      throw libvirtError(ErrorCode.OPERATION_INVALID, 'domain is already running');
    this.state = DomainState.RUNNING;
    this.conn.emit({ uuid: this.uuid, name: this.name, event: 2, detail: 0 });
  }
  async shutdown() {
    this.conn.calls.push(`shutdown ${this.uuid}`);
    if (this.state !== DomainState.RUNNING)
      throw libvirtError(ErrorCode.OPERATION_INVALID, 'domain is not running');
    if (!this.ignoreShutdown)
      [this.state, this.reason] = [DomainState.SHUTOFF, ShutoffReason.SHUTDOWN];
  }
  async destroy() {
    this.conn.calls.push(`destroy ${this.uuid}`);
    if (this.state === DomainState.SHUTOFF)
      throw libvirtError(ErrorCode.OPERATION_INVALID, 'domain is not running');
    [this.state, this.reason] = [DomainState.SHUTOFF, ShutoffReason.DESTROYED];
  }
  async reboot() {}
  async suspend() {}
  async resume() {}
  async undefine() {
    this.conn.calls.push(`undefine ${this.uuid}`);
    this.conn.domains.delete(this.uuid);
  }
  async getState() {
    return { state: this.state, reason: this.reason };
  }
  async getInfo() {
    return { state: this.state, maxMemoryKiB: 0, memoryKiB: 0, vcpus: 1, cpuTimeNs: 0 };
  }
  async getXMLDesc() {
    return '<domain/>';
  }
  getId() {
    return this.state === DomainState.RUNNING ? 1 : -1;
  }
}

export class FakeConnection implements Connection {
  readonly domains = new Map<string, FakeDomain>();
  readonly calls: string[] = [];
  closed = false;
  alive = true;
  private listeners: ((e: LifecycleEventData) => void)[] = [];
  private closers: ((reason: number) => void)[] = [];
  async close() {
    this.closed = true;
    this.alive = false;
  }
  isAlive() {
    return this.alive;
  }
  async setKeepAlive() {}
  async nodeInfo() {
    return {
      model: 'x86_64',
      memoryKiB: 1,
      cpus: 1,
      mhz: 1,
      nodes: 1,
      sockets: 1,
      cores: 1,
      threads: 1,
    };
  }
  async versions() {
    return { libvirt: '10.0.0', hypervisor: '8.2.0', type: 'QEMU' };
  }
  async domainCapabilities(virtType: string) {
    return `<domainCapabilities><domain>${virtType}</domain></domainCapabilities>`;
  }
  async listAllDomains() {
    return [...this.domains.values()];
  }
  async lookupByUUID(uuid: string) {
    const d = this.domains.get(uuid);
    if (!d) throw libvirtError(ErrorCode.NO_DOMAIN, `no domain with UUID ${uuid}`);
    return d;
  }
  async lookupByName(): Promise<Domain> {
    throw libvirtError(ErrorCode.NO_DOMAIN, 'no domain');
  }
  async defineXML(xml: string) {
    const uuid = /<uuid>([^<]+)<\/uuid>/.exec(xml)?.[1] as string;
    this.calls.push(`defineXML ${uuid}`);
    const d = this.domains.get(uuid) ?? new FakeDomain(uuid, `kova-${uuid}`, this);
    this.domains.set(uuid, d);
    return d;
  }
  /** A domain as if defined earlier, in this state. */
  addDomain(uuid: string, state: number = DomainState.RUNNING, reason = 0): FakeDomain {
    const d = new FakeDomain(uuid, `kova-${uuid}`, this);
    [d.state, d.reason] = [state, reason];
    this.domains.set(uuid, d);
    return d;
  }
  async onLifecycleEvent(cb: (e: LifecycleEventData) => void) {
    this.listeners.push(cb);
    return this.listeners.length;
  }
  onClose(cb: (reason: number) => void) {
    this.closers.push(cb);
  }
  emit(e: LifecycleEventData) {
    for (const l of this.listeners) l(e);
  }
  dropConnection(reason = 0) {
    this.alive = false;
    for (const c of this.closers) c(reason);
  }
}

/** What the API server holds, and the writes it received. */
export class FakeApi {
  readonly store = new Map<string, Instance>();
  readonly writes: InstanceStatus[] = [];
  readonly finalizerWrites: string[][] = [];
  /** Errors thrown by the next status writes, in order. */
  readonly failWrites: unknown[] = [];
  readonly failFinalizers: unknown[] = [];
  private rv = 100;

  put(inst: Instance): Instance {
    const stored = { ...inst, metadata: { ...inst.metadata, resourceVersion: String(++this.rv) } };
    this.store.set(`${inst.metadata.namespace}/${inst.metadata.name}`, stored);
    return stored;
  }
  get(name: string, namespace = 'ns'): Instance | undefined {
    return this.store.get(`${namespace}/${name}`);
  }
  readonly patcher = {
    /** A JSON merge patch of the status, as the API server applies it: null removes a field. */
    mergeStatus: async (
      ref: { name: string; namespace?: string },
      _rv: string,
      body: Record<string, unknown>,
    ): Promise<unknown> => {
      const err = this.failWrites.shift();
      if (err) throw err;
      this.writes.push(body as InstanceStatus);
      const cur = this.get(ref.name, ref.namespace);
      if (!cur) throw Object.assign(new Error('not found'), { code: 404 });
      const status: Record<string, unknown> = { ...cur.status };
      for (const [k, v] of Object.entries(body)) {
        if (v === null) delete status[k];
        else status[k] = v;
      }
      return this.put({ ...cur, status: status as InstanceStatus });
    },
    setFinalizers: async (
      ref: { name: string; namespace?: string },
      _rv: string,
      finalizers: string[],
    ) => {
      const err = this.failFinalizers.shift();
      if (err) throw err;
      this.finalizerWrites.push(finalizers);
      const cur = this.get(ref.name, ref.namespace);
      if (!cur) throw Object.assign(new Error('not found'), { code: 404 });
      // The last finalizer of an object being deleted: the API server removes it.
      if (cur.metadata.deletionTimestamp && finalizers.length === 0) {
        this.store.delete(`${ref.namespace}/${ref.name}`);
        return cur;
      }
      return this.put({ ...cur, metadata: { ...cur.metadata, finalizers } });
    },
  };
}

export class FakeHost implements HostOps {
  readonly files = new Set<string>();
  readonly bridges = new Set<string>();
  readonly calls: string[] = [];
  readonly failRemove: Error[] = [];
  async plugNetworks(
    uid: string,
    interfaces: { network: string }[],
    networkOf: (n: string) => INetwork | undefined,
  ) {
    this.calls.push(`plugNetworks ${uid}`);
    for (const i of interfaces) this.bridges.add(networkOf(i.network)?.spec.bridge as string);
    return [];
  }
  async createDisks(
    paths: StatePaths,
    uid: string,
    _base: string,
    _format: string,
    flavor: IFlavor['spec'],
  ) {
    this.calls.push(`createDisks ${uid}`);
    const root = paths.instanceFile(uid, 'root.qcow2');
    this.files.add(root);
    if ((flavor.ephemeralGiB ?? 0) > 0) this.files.add(paths.instanceFile(uid, 'ephemeral.qcow2'));
    if ((flavor.swapMiB ?? 0) > 0) this.files.add(paths.instanceFile(uid, 'swap.qcow2'));
    return { root };
  }
  async removeInstanceFiles(paths: StatePaths, uid: string) {
    this.calls.push(`removeInstanceFiles ${uid}`);
    const err = this.failRemove.shift();
    if (err) throw err;
    for (const f of [...this.files]) if (f.startsWith(paths.instanceDir(uid))) this.files.delete(f);
  }
  async buildConfigDrive(path: string) {
    this.calls.push(`buildConfigDrive`);
    this.files.add(path);
  }
  async exists(path: string) {
    return this.files.has(path);
  }
  async removeFile(path: string) {
    this.calls.push(`removeFile ${path}`);
    this.files.delete(path);
  }
  async rename(from: string, to: string) {
    this.calls.push(`rename ${from} ${to}`);
    if (!this.files.delete(from)) throw new Error(`ENOENT: ${from}`);
    this.files.add(to);
  }

  async bridgeExists(name: string) {
    return this.bridges.has(name);
  }
}

export class FakeCache {
  readonly calls: string[] = [];
  /** Resolves ensure() only when released, to hold a build in its download. */
  hold: Promise<void> | undefined;
  fail: Error | undefined;
  constructor(private readonly host: FakeHost) {}
  async ensure(image: IImage) {
    this.calls.push(`ensure ${image.metadata?.name}`);
    await this.hold;
    if (this.fail) throw this.fail;
    const path = `/cache/${image.spec.sha256}.img`;
    this.host.files.add(path);
    return path;
  }
}

export { quietLogger };

export interface World {
  d: AgentDeps;
  api: FakeApi;
  conn: FakeConnection;
  host: FakeHost;
  cache: FakeCache;
  events: string[];
}

export function world(config: Partial<AgentConfig> = {}): World {
  const api = new FakeApi();
  const conn = new FakeConnection();
  const host = new FakeHost();
  const cache = new FakeCache(host);
  const events: string[] = [];
  const waiters = new Set<(e: LifecycleEventData) => void>();
  void conn.onLifecycleEvent((e) => [...waiters].forEach((w) => w(e)));
  const flavor: IFlavor = {
    apiVersion: 'compute.kova.dev/v1alpha1',
    kind: 'Flavor',
    metadata: { name: 'nano' },
    spec: { vcpus: 1, memoryMiB: 128, rootDiskGiB: 1 },
  } as IFlavor;
  const image = {
    apiVersion: 'compute.kova.dev/v1alpha1',
    kind: 'Image',
    metadata: { name: 'blank' },
    spec: { source: '/img', sha256: 'a'.repeat(64) },
  } as IImage;
  const network = {
    apiVersion: 'compute.kova.dev/v1alpha1',
    kind: 'Network',
    metadata: { name: 'net', generation: 1 },
    spec: { cidr: '10.0.0.0/24', gateway: '10.0.0.1', bridge: 'br-test' },
    status: usableNetworkStatus(4242),
  } as INetwork;
  const d: AgentDeps = {
    config: {
      nodeName: NODE,
      libvirtUri: 'test:///default',
      virtType: 'qemu',
      stateDir: '/var/lib/kova-test',
      systemNamespace: 'kova-system',
      heartbeatMs: 10_000,
      resyncMs: 30_000,
      shutdownTimeoutMs: 60_000,
      buildTimeoutMs: 900_000,
      orphanGraceMs: 60_000,
      imageTtlMs: 3_600_000,
      healthPort: 0,
      consolePort: 0,
      ...config,
    },
    virtType: 'qemu',
    session: {
      conn: async () => conn,
      nextEvent: (uuid, ms) =>
        new Promise((resolve) => {
          const w = (e: LifecycleEventData) => {
            if (e.uuid !== uuid) return;
            waiters.delete(w);
            clearTimeout(t);
            resolve(e);
          };
          const t = setTimeout(() => {
            waiters.delete(w);
            resolve(undefined);
          }, ms);
          waiters.add(w);
        }),
    },
    instances: {
      get: (name, namespace) => api.get(name, namespace),
      list: () => [...api.store.values()],
    },
    actions: { list: () => [] },
    flavors: { get: (n) => (n === 'nano' ? flavor : undefined) },
    images: { get: (n) => (n === 'blank' ? image : undefined) },
    networks: { get: (n) => (n === 'net' ? network : undefined) },
    cache,
    paths: new StatePaths('/var/lib/kova-test'),
    patcher: api.patcher,
    events: { record: (_o, type, reason) => events.push(`${type} ${reason}`) },
    metrics: agentMetrics(new Registry(), { hits: 0, misses: 0, bytesFetched: 0 }),
    logger: quietLogger,
    host,
  };
  return { d, api, conn, host, cache, events };
}

/** An Instance bound to NODE, in `phase`, with one allocated interface. */
export function instance(
  status: InstanceStatus = {},
  over: {
    runStrategy?: string;
    generation?: number;
    deletionTimestamp?: string;
    finalizers?: string[];
  } = {},
): Instance {
  return {
    apiVersion: 'compute.kova.dev/v1alpha1',
    kind: 'Instance',
    metadata: {
      name: 'vm',
      namespace: 'ns',
      uid: UID,
      generation: over.generation ?? 1,
      finalizers: over.finalizers ?? ['compute.kova.dev/node-cleanup'],
      ...(over.deletionTimestamp
        ? { deletionTimestamp: over.deletionTimestamp as unknown as Date }
        : {}),
    },
    spec: {
      flavor: 'nano',
      image: 'blank',
      networks: [{ network: 'net' }],
      ...(over.runStrategy ? { runStrategy: over.runStrategy } : {}),
    },
    status: {
      nodeName: NODE,
      interfaces: [
        {
          network: 'net',
          ip: '10.0.0.5',
          mac: 'fa:16:3e:00:00:05',
          gateway: '10.0.0.1',
          prefix: 24,
        },
      ],
      ...status,
    },
  } as Instance;
}

/** A Network's status as the operator's Network controller leaves it: checked, Ready, its VNI. */
export function usableNetworkStatus(vni: number) {
  return {
    vni,
    observedGeneration: 1,
    conditions: [
      {
        type: 'Ready',
        status: 'True' as const,
        reason: 'Ready',
        message: `VNI ${vni}`,
        observedGeneration: 1,
        lastTransitionTime: '2026-11-24T10:00:00Z',
      },
    ],
  };
}
