// Wires the node agent together: informers on the Instances bound to this node and on the
// InstanceActions handed to it (an action only enqueues its Instance), two work queues
// (builds, which can wait minutes on a download, apart from power and deletes, which must not
// wait behind them), libvirt lifecycle events (which only enqueue), a periodic resync and
// garbage collection.
import type { KubeConfig } from '@kubernetes/client-node';
import {
  Applier,
  EventRecorder,
  Informer,
  objectKey,
  Patcher,
  WorkQueue,
  type Logger,
} from '@kova/controller-kit';
import {
  AGENT_FIELD_MANAGER,
  API_VERSION,
  PLURAL,
  type IFlavor,
  type IImage,
  type INetwork,
  type InstanceActionObject,
  type KovaKind,
} from '@kova/crds';
import { mkdir } from 'node:fs/promises';
import type { Registry } from 'prom-client';
import type { AgentConfig } from './config.js';
import { GarbageCollector, stateName } from './garbage-collector.js';
import { LibvirtSession } from './host/libvirt-session.js';
import { StatePaths } from './host/paths.js';
import { detectVirtType, type VirtTypeDecision } from './host/virt-type.js';
import { HypervisorReporter } from './hypervisor-reporter.js';
import { realHost, type Instance } from './deps.js';
import { AgentReconciler } from './instance-reconciler.js';
import { selfSignedCertificate } from './console/certificate.js';
import { ConsoleEndpoint } from './console/endpoint.js';
import { ConsoleSessions } from './console/sessions.js';
import { agentMetrics, type AgentMetrics } from './metrics.js';
import { guestNics, NodeNetworks, networksInUse } from './network/node-networks.js';
import { dropLegacyFilters } from './domain/legacy-filter.js';
import { removeLegacyGuard } from './network/legacy-guard.js';
import { tunnelEndpoint } from './network/tunnel.js';
import { ImageCache } from './steps/image-cache.js';

const BUILD_WORKERS = 2;
const LIFECYCLE_WORKERS = 4;
const BUILD_PHASES: ReadonlySet<string> = new Set(['Networking', 'BlockDeviceMapping', 'Spawning']);
const TICK_MS = 1000;
const ACTIONS_WAIT_MS = 30_000;
const STALL_MS = 30_000;

const kova = (kind: KovaKind) => ({ apiVersion: API_VERSION, kind, plural: PLURAL[kind] });

export class NodeAgent {
  readonly instances: Informer<Instance>;
  private readonly actions: Informer<InstanceActionObject>;
  private readonly flavors: Informer<IFlavor>;
  private readonly images: Informer<IImage>;
  private readonly networks: Informer<INetwork>;
  private readonly builds: WorkQueue;
  private readonly lifecycle: WorkQueue;
  private readonly session: LibvirtSession;
  private readonly paths: StatePaths;
  private readonly cache: ImageCache;
  private readonly metrics: AgentMetrics;
  private reporter: HypervisorReporter | undefined;
  private nodeNetworks: NodeNetworks | undefined;
  private gc: GarbageCollector | undefined;
  private console: { endpoint: ConsoleEndpoint; sessions: ConsoleSessions } | undefined;
  private timers: NodeJS.Timeout[] = [];
  private reportTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private lastTick = Date.now();
  private readonly tick: NodeJS.Timeout;

  constructor(
    private readonly kc: KubeConfig,
    private readonly config: AgentConfig,
    private readonly logger: Logger,
    private readonly registry: Registry,
  ) {
    const opts = { logger, registry };
    this.instances = new Informer(kc, kova('Instance'), {
      ...opts,
      fieldSelector: `status.nodeName=${config.nodeName}`,
    });
    this.actions = new Informer(kc, kova('InstanceAction'), {
      ...opts,
      fieldSelector: `status.nodeName=${config.nodeName}`,
    });
    this.flavors = new Informer(kc, kova('Flavor'), opts);
    this.images = new Informer(kc, kova('Image'), opts);
    this.networks = new Informer(kc, kova('Network'), opts);
    this.builds = new WorkQueue({ name: 'node-builds', logger, registry });
    this.lifecycle = new WorkQueue({ name: 'node-instances', logger, registry });
    this.paths = new StatePaths(config.stateDir);
    this.cache = new ImageCache(this.paths);
    this.metrics = agentMetrics(registry, this.cache.stats);
    this.session = new LibvirtSession({
      uri: config.libvirtUri,
      logger,
      onEvent: (e) => this.enqueueUid(e.uuid),
      onConnected: () => this.resync(),
    });
    // The event loop's own pulse: a blocked loop (a hung synchronous call) fails liveness.
    this.tick = setInterval(() => (this.lastTick = Date.now()), TICK_MS);
    this.tick.unref();
  }

  /**
   * Liveness: the process's own loop turns. Neither the API server nor libvirtd: an outage of
   * either must not get the agent killed (a restarted agent waits in informer sync, and the
   * libvirt session reconnects by itself); readiness says it instead.
   */
  isHealthy(): boolean | string {
    const stalled = Date.now() - this.lastTick;
    return stalled <= STALL_MS || `event loop stalled for ${Math.round(stalled / 1000)}s`;
  }

  /** Readiness: libvirt connected, informers synced and the heartbeat reaching the API server. */
  isReady(): boolean | string {
    if (!this.session.isConnected()) return 'not connected to libvirt';
    if (!this.hasSynced()) return 'informers have not listed yet';
    const age = this.reporter?.heartbeatAgeMs() ?? Infinity;
    return age < 3 * this.config.heartbeatMs || `last heartbeat ${Math.round(age / 1000)}s ago`;
  }

  private get informers(): Pick<Informer<object>, 'start' | 'stop' | 'hasSynced'>[] {
    return [this.instances, this.actions, this.flavors, this.images, this.networks];
  }

  hasSynced(): boolean {
    return this.informers.every((i) => i === this.actions || i.hasSynced());
  }

  async start(): Promise<void> {
    checkSocketPath(this.paths);
    await mkdir(this.paths.instances, { recursive: true, mode: 0o755 });
    await mkdir(this.paths.images, { recursive: true, mode: 0o755 });
    await this.session.conn();
    const decision = await this.virtType();
    const { virtType } = decision;
    this.logger.info('hypervisor type', { ...decision, node: this.config.nodeName });
    await Promise.all(this.informers.filter((i) => i !== this.actions).map((i) => i.start()));
    // The power handler must know the actions in flight before it acts (or it would restart a
    // guest a reboot is shutting down), but actions must not hold up the guests for good: an
    // agent whose InstanceActions cannot be listed (no CRD yet, older RBAC) runs its guests
    // after a while and takes actions up once it can (the informer retries, and logs why).
    const listed = await Promise.race([
      this.actions.start().then(() => true),
      new Promise<false>((r) => setTimeout(() => r(false), ACTIONS_WAIT_MS).unref()),
    ]);
    if (!listed)
      this.logger.warn('InstanceActions cannot be listed yet; running the guests without them', {
        waitedSeconds: ACTIONS_WAIT_MS / 1000,
      });
    const tunnel = await tunnelEndpoint(
      this.config.tunnelAddress,
      this.kc.getCurrentCluster()?.server ?? 'https://127.0.0.1',
    );
    this.logger.info('tunnel endpoint', { node: this.config.nodeName, ...tunnel });
    await removeLegacyGuard(this.logger).catch((error: Error) =>
      this.logger.warn('could not remove the iptables guard of an older kova agent', { error }),
    );
    await dropLegacyFilters(await this.session.conn(), this.config.nodeName, this.logger).catch(
      (error: Error) =>
        this.logger.warn('could not drop the nwfilter of domains an older agent defined', {
          error,
        }),
    );
    const nodeNetworks = new NodeNetworks({
      nodeName: this.config.nodeName,
      tunnel,
      networks: this.networks,
      inUse: () => networksInUse(this.instances.list()),
      nics: () => guestNics(this.instances.list()),
      logger: this.logger,
    });
    this.nodeNetworks = nodeNetworks;
    await this.startConsole(tunnel?.address);
    const applier = new Applier(this.kc, AGENT_FIELD_MANAGER);
    this.reporter = new HypervisorReporter(
      this.kc,
      { ...this.config, tunnelAddress: tunnel?.address },
      applier,
      this.session,
      decision,
      this.instances,
      this.flavors,
      this.cache,
      this.logger,
    );
    await this.reporter.start();
    this.gc = new GarbageCollector(
      this.config,
      this.session,
      this.paths,
      this.cache,
      () => this.instances.list(),
      (img) => imageShas(this.images.get(img)),
      this.logger,
    );
    const reconciler = new AgentReconciler({
      config: this.config,
      virtType,
      session: this.session,
      instances: this.instances,
      actions: this.actions,
      flavors: this.flavors,
      images: this.images,
      networks: this.networks,
      cache: this.cache,
      paths: this.paths,
      patcher: new Patcher(this.kc, AGENT_FIELD_MANAGER),
      events: new EventRecorder(this.kc, 'kova-node-agent', this.logger),
      metrics: this.metrics,
      logger: this.logger,
      host: realHost(nodeNetworks),
    });
    this.instances.on((inst, type) => {
      if (type !== 'delete') this.enqueue(inst);
      this.reportSoon();
      nodeNetworks.kick();
    });
    this.networks.on(() => nodeNetworks.kick());
    this.actions.on((a, type) => {
      const inst = this.instances.get(a.spec.instance, a.metadata.namespace);
      if (inst && type !== 'delete') this.enqueue(inst);
    });
    const sync = (key: string) => reconciler.sync(key);
    this.running = Promise.all([
      this.builds.run(sync, BUILD_WORKERS),
      this.lifecycle.run(sync, LIFECYCLE_WORKERS),
    ]).then(() => undefined);
    this.resync();
    this.timers.push(setInterval(() => this.resync(), this.config.resyncMs));
    this.timers.push(setInterval(() => void this.collect(), this.config.resyncMs));
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    clearInterval(this.tick);
    clearTimeout(this.reportTimer);
    this.reporter?.stop();
    this.nodeNetworks?.stop();
    this.console?.sessions.stop();
    await this.console?.endpoint.close();
    this.builds.shutDown();
    this.lifecycle.shutDown();
    await this.running;
    await Promise.all(this.informers.map((i) => i.stop()));
    await this.session.close();
  }

  /** Runs the garbage collector once (also on its own period); returns what it removed. */
  async collect(): Promise<string[]> {
    try {
      const removed = (await this.gc?.collect()) ?? [];
      // The operator frees addresses it held for this node once a report no longer lists them.
      if (removed.length) this.reportSoon();
      const states = await this.gc?.domainStates();
      this.metrics.domains.reset();
      for (const [s, n] of states ?? []) this.metrics.domains.set({ state: stateName(s) }, n);
      return removed;
    } catch (err) {
      this.logger.warn('garbage collection failed', { error: err as Error });
      return [];
    }
  }

  /** The console endpoint, and the sessions it serves (Console and ConsoleLog actions). */
  private async startConsole(nodeAddress: string | undefined): Promise<void> {
    const cert = selfSignedCertificate(`kova-console ${this.config.nodeName}`);
    const address = this.config.consoleAddress ?? nodeAddress ?? '127.0.0.1';
    const host = address.includes(':') ? `[${address}]` : address;
    let published = { endpoint: '', certSHA256: cert.sha256 };
    const sessions = new ConsoleSessions({
      actions: this.actions,
      instances: this.instances,
      patcher: new Patcher(this.kc, AGENT_FIELD_MANAGER),
      paths: this.paths,
      logger: this.logger,
      endpoint: () => published,
    });
    const endpoint = new ConsoleEndpoint(cert, (hello) => sessions.admit(hello), this.logger);
    let port: number;
    try {
      port = await endpoint.listen(address, this.config.consolePort);
    } catch (err) {
      // Without an endpoint the guests still run; console actions fail NotTakenUp (operator).
      this.logger.error('console endpoint cannot listen; no consoles on this node', {
        address,
        port: this.config.consolePort,
        error: err as Error,
      });
      return;
    }
    published = { endpoint: `${host}:${port}`, certSHA256: cert.sha256 };
    this.console = { endpoint, sessions };
    this.actions.on((a, type) => {
      if (type !== 'delete') sessions.observe(a);
    });
    for (const a of this.actions.list()) sessions.observe(a);
    this.logger.info('console endpoint', {
      node: this.config.nodeName,
      endpoint: `${host}:${port}`,
    });
  }

  private async virtType(): Promise<VirtTypeDecision> {
    if (this.config.libvirtUri.startsWith('test:'))
      return { virtType: 'test', probe: 'TestDriver', reason: "libvirt's test driver" };
    if (this.config.virtType !== 'auto')
      return { virtType: this.config.virtType, probe: 'Configured', reason: 'KOVA_VIRT_TYPE' };
    const conn = await this.session.conn();
    return detectVirtType({ domainCapabilities: (type) => conn.domainCapabilities(type) });
  }

  /**
   * Instance events come in bursts (every status write is one); the Hypervisor report reads
   * libvirt and the disk, so a burst costs one report a second at most.
   */
  private reportSoon(): void {
    if (this.reportTimer) return;
    this.reportTimer = setTimeout(() => {
      this.reportTimer = undefined;
      this.reporter
        ?.report()
        .catch((err) => this.logger.warn('hypervisor report failed', { error: err as Error }));
    }, 1000);
  }

  private resync(): void {
    for (const inst of this.instances.list()) this.enqueue(inst);
    this.nodeNetworks?.kick();
  }

  private enqueueUid(uid: string): void {
    const inst = this.instances.list().find((i) => i.metadata.uid === uid);
    if (inst) this.enqueue(inst);
  }

  /**
   * Builds, and Rebuilds (which may download an image), to their queue; power, failures and
   * deletes to theirs, never waiting behind a download (the reconciler serialises a key).
   */
  private enqueue(inst: Instance): void {
    const building =
      !inst.metadata.deletionTimestamp &&
      (BUILD_PHASES.has(inst.status?.phase ?? 'Scheduling') || this.rebuilding(inst));
    (building ? this.builds : this.lifecycle).add(objectKey(inst));
  }

  private rebuilding(inst: Instance): boolean {
    return this.actions
      .list(inst.metadata.namespace)
      .some(
        (a) =>
          a.spec.action === 'Rebuild' &&
          a.status?.instanceUID === inst.metadata.uid &&
          (a.status.phase === 'Accepted' || a.status.phase === 'Running'),
      );
  }
}

/**
 * A guest's serial console is a Unix socket under the state dir; its path must fit the 107
 * bytes a socket path may have, or no domain could be defined: say so at start.
 */
function checkSocketPath(paths: StatePaths): void {
  const socket = paths.instanceFile('00000000-0000-4000-8000-000000000000', 'console.sock');
  if (Buffer.byteLength(socket) > 107)
    throw new Error(
      `the state dir ${paths.root} is too long: a guest's console socket (${socket}) would exceed the 107 bytes of a Unix socket path; choose a shorter KOVA_STATE_DIR (agent.stateDir)`,
    );
}

/** The checksums of an Image's files: kept by the garbage collector while Instances use it. */
function imageShas(image: IImage | undefined): string[] {
  const s = image?.spec;
  return s ? [s.sha256, s.kernel?.sha256, s.initrd?.sha256].filter((x): x is string => !!x) : [];
}
