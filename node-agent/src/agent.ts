// Wires the node agent together: informers on the Instances bound to this node, a work queue,
// libvirt lifecycle events (which only enqueue), a periodic resync and garbage collection.
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
  type KovaKind,
} from '@kova/crds';
import { mkdir } from 'node:fs/promises';
import type { Registry } from 'prom-client';
import type { AgentConfig } from './config.js';
import { GarbageCollector, stateName } from './garbage-collector.js';
import { LibvirtSession } from './host/libvirt-session.js';
import { StatePaths } from './host/paths.js';
import { detectVirtType } from './host/virt-type.js';
import { HypervisorReporter } from './hypervisor-reporter.js';
import { AgentReconciler, type Instance } from './instance-reconciler.js';
import { agentMetrics, type AgentMetrics } from './metrics.js';
import { ImageCache } from './steps/image-cache.js';

const kova = (kind: KovaKind) => ({ apiVersion: API_VERSION, kind, plural: PLURAL[kind] });

export class NodeAgent {
  readonly instances: Informer<Instance>;
  private readonly flavors: Informer<IFlavor>;
  private readonly images: Informer<IImage>;
  private readonly networks: Informer<INetwork>;
  private readonly queue: WorkQueue;
  private readonly session: LibvirtSession;
  private readonly paths: StatePaths;
  private readonly cache: ImageCache;
  private readonly metrics: AgentMetrics;
  private reporter: HypervisorReporter | undefined;
  private gc: GarbageCollector | undefined;
  private timers: NodeJS.Timeout[] = [];
  private reportTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

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
    this.flavors = new Informer(kc, kova('Flavor'), opts);
    this.images = new Informer(kc, kova('Image'), opts);
    this.networks = new Informer(kc, kova('Network'), opts);
    this.queue = new WorkQueue({ name: 'node-instances', logger, registry });
    this.paths = new StatePaths(config.stateDir);
    this.cache = new ImageCache(this.paths);
    this.metrics = agentMetrics(registry, this.cache.stats);
    this.session = new LibvirtSession({
      uri: config.libvirtUri,
      logger,
      onEvent: (e) => this.enqueueUid(e.uuid),
      onConnected: () => this.resync(),
    });
  }

  isHealthy(): boolean | string {
    if (!this.session.isConnected()) return 'not connected to libvirt';
    const age = this.reporter?.heartbeatAgeMs() ?? Infinity;
    return age < 3 * this.config.heartbeatMs || `last heartbeat ${Math.round(age / 1000)}s ago`;
  }

  hasSynced(): boolean {
    return [this.instances, this.flavors, this.images, this.networks].every((i) => i.hasSynced());
  }

  async start(): Promise<void> {
    await mkdir(this.paths.instances, { recursive: true, mode: 0o755 });
    await mkdir(this.paths.images, { recursive: true, mode: 0o755 });
    await this.session.conn();
    const virtType = await this.virtType();
    this.logger.info('hypervisor type', { virtType, node: this.config.nodeName });
    await Promise.all(
      [this.instances, this.flavors, this.images, this.networks].map((i) => i.start()),
    );
    const applier = new Applier(this.kc, AGENT_FIELD_MANAGER);
    this.reporter = new HypervisorReporter(
      this.kc,
      this.config,
      applier,
      this.session,
      virtType,
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
      (img) => this.images.get(img)?.spec.sha256,
      this.logger,
    );
    const reconciler = new AgentReconciler({
      config: this.config,
      virtType,
      session: this.session,
      instances: this.instances,
      flavors: this.flavors,
      images: this.images,
      networks: this.networks,
      cache: this.cache,
      paths: this.paths,
      applier,
      patcher: new Patcher(this.kc, AGENT_FIELD_MANAGER),
      events: new EventRecorder(this.kc, 'kova-node-agent', this.logger),
      metrics: this.metrics,
      logger: this.logger,
    });
    this.instances.on((inst, type) => {
      if (type !== 'delete') this.queue.add(objectKey(inst));
      this.reportSoon();
    });
    this.running = this.queue.run((key) => reconciler.sync(key), 4);
    this.resync();
    this.timers.push(setInterval(() => this.resync(), this.config.resyncMs));
    this.timers.push(setInterval(() => void this.collect(), this.config.resyncMs));
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    clearTimeout(this.reportTimer);
    this.reporter?.stop();
    this.queue.shutDown();
    await this.running;
    await Promise.all(
      [this.instances, this.flavors, this.images, this.networks].map((i) => i.stop()),
    );
    await this.session.close();
  }

  /** Runs the garbage collector once (also on its own period); returns what it removed. */
  async collect(): Promise<string[]> {
    try {
      const removed = (await this.gc?.collect()) ?? [];
      const states = await this.gc?.domainStates();
      this.metrics.domains.reset();
      for (const [s, n] of states ?? []) this.metrics.domains.set({ state: stateName(s) }, n);
      return removed;
    } catch (err) {
      this.logger.warn('garbage collection failed', { error: err as Error });
      return [];
    }
  }

  private async virtType(): Promise<'kvm' | 'qemu' | 'test'> {
    if (this.config.libvirtUri.startsWith('test:')) return 'test';
    return this.config.virtType === 'auto' ? detectVirtType() : this.config.virtType;
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
    for (const inst of this.instances.list()) this.queue.add(objectKey(inst));
  }

  private enqueueUid(uid: string): void {
    const inst = this.instances.list().find((i) => i.metadata.uid === uid);
    if (inst) this.queue.add(objectKey(inst));
  }
}
