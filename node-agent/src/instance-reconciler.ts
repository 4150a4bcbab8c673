// The agent's half of an Instance's life, one handler per phase: plug networking, prepare block
// devices, spawn the domain, then keep its power state true to runStrategy; on delete, remove
// the domain and its disks. Each step checks whether its work is already done (a restarted
// agent resumes, and adopts running domains instead of restarting them).
import {
  apiStatus,
  type Applier,
  type EventRecorder,
  type Informer,
  type Logger,
  type Patcher,
  type SyncResult,
} from '@kova/controller-kit';
import {
  AGENT_PHASES,
  API_VERSION,
  ConditionType,
  NODE_CLEANUP_FINALIZER,
  PLURAL,
  setCondition,
  type Condition,
  type Fault,
  type IFlavor,
  type IImage,
  type IInstance,
  type INetwork,
  type InstanceStatus,
  type Phase,
  type PowerState,
} from '@kova/crds';
import type { AgentConfig } from './config.js';
import { domainXml } from './domain/xml.js';
import { BuildFault } from './errors.js';
import type { LibvirtSession } from './host/libvirt-session.js';
import type { StatePaths } from './host/paths.js';
import {
  DomainState,
  ErrorCode,
  isLibvirtError,
  isNoDomain,
  ShutoffReason,
  type Domain,
} from './libvirt/index.js';
import type { AgentMetrics } from './metrics.js';
import { buildConfigDrive } from './steps/config-drive.js';
import { createDisks, removeInstanceFiles } from './steps/disks.js';
import type { ImageCache } from './steps/image-cache.js';
import { plugNetworks } from './steps/network.js';

export type Instance = IInstance & { metadata: { name: string; namespace: string; uid: string } };

export interface AgentDeps {
  config: AgentConfig;
  virtType: 'kvm' | 'qemu' | 'test';
  session: LibvirtSession;
  instances: Informer<Instance>;
  flavors: Informer<IFlavor>;
  images: Informer<IImage>;
  networks: Informer<INetwork>;
  cache: ImageCache;
  paths: StatePaths;
  applier: Applier;
  patcher: Patcher;
  events: EventRecorder;
  metrics: AgentMetrics;
  logger: Logger;
}

const AGENT_CONDITIONS = new Set<string>([
  ConditionType.NetworkReady,
  ConditionType.BlockDevicesReady,
  ConditionType.Spawned,
  ConditionType.Ready,
]);
const RUNNING_WAIT_MS = 30_000;
const CRASH_WINDOW_MS = 60_000;

interface StatusChange {
  phase?: Phase;
  powerState?: PowerState;
  domainUUID?: string;
  launchedAt?: string;
  fault?: Fault;
  conditions?: Omit<Condition, 'lastTransitionTime'>[];
}

export class AgentReconciler {
  private readonly restarts = new Map<string, number[]>();
  /** Instances whose step failed; their next syncs wait until the informer shows the fault. */
  private readonly faulted = new Set<string>();

  constructor(private readonly d: AgentDeps) {}

  async sync(key: string): Promise<SyncResult | void> {
    const [namespace, name] = key.split('/') as [string, string];
    let inst = this.d.instances.get(name, namespace);
    if (!inst || inst.status?.nodeName !== this.d.config.nodeName) return;
    if (inst.metadata.deletionTimestamp) return this.teardown(inst);
    if (inst.status?.fault) {
      this.faulted.delete(inst.metadata.uid);
      return;
    }
    if (this.faulted.has(inst.metadata.uid)) return;
    if (
      inst.status.phase === 'Networking' &&
      (inst.status.interfaces?.length ?? 0) === inst.spec.networks.length
    )
      inst = await this.step(inst, 'networking', () => this.plug(inst!));
    if (inst.status?.phase === 'BlockDeviceMapping')
      inst = await this.step(inst, 'block_devices', () => this.prepareDisks(inst!));
    if (inst.status?.phase === 'Spawning')
      inst = await this.step(inst, 'spawning', () => this.spawn(inst!));
    if (inst.status?.phase === 'Active' || inst.status?.phase === 'Stopped')
      return this.enforcePower(inst);
  }

  // ---- Networking → BlockDeviceMapping

  private async plug(inst: Instance): Promise<Instance> {
    const nics = await plugNetworks(inst.metadata.uid, inst.status?.interfaces ?? [], (n) =>
      this.d.networks.get(n),
    );
    return this.write(inst, {
      phase: 'BlockDeviceMapping',
      conditions: [
        {
          type: ConditionType.NetworkReady,
          status: 'True',
          reason: 'Plugged',
          message: nics.map((n) => `${n.ip} on bridge ${n.bridge} (${n.tap})`).join(', '),
        },
      ],
    });
  }

  // ---- BlockDeviceMapping → Spawning

  private async prepareDisks(inst: Instance): Promise<Instance> {
    const { flavor, image } = this.refs(inst);
    const base = await this.d.cache.ensure(image);
    const disks = await createDisks(
      this.d.paths,
      inst.metadata.uid,
      base,
      image.spec.format ?? 'qcow2',
      flavor.spec,
    );
    await buildConfigDrive(this.d.paths.instanceFile(inst.metadata.uid, 'cidata.iso'), {
      instanceId: inst.metadata.uid,
      hostname: inst.metadata.name,
      sshAuthorizedKeys: inst.spec.sshAuthorizedKeys ?? [],
      userData: inst.spec.userData,
      interfaces: inst.status?.interfaces ?? [],
      dns: this.dnsOf(inst),
    }).catch((err) => {
      throw new BuildFault(
        'ConfigDriveFailed',
        `could not build the config drive: ${(err as Error).message}`,
        true,
        { cause: err },
      );
    });
    return this.write(inst, {
      phase: 'Spawning',
      conditions: [
        {
          type: ConditionType.BlockDevicesReady,
          status: 'True',
          reason: 'DisksReady',
          message: `root overlay ${disks.root} on image ${image.metadata?.name}`,
        },
      ],
    });
  }

  // ---- Spawning → Active

  private async spawn(inst: Instance): Promise<Instance> {
    const dom = await this.defineDomain(inst);
    const { state } = await this.lv('getState', () => dom.getState());
    if (state !== DomainState.RUNNING) {
      await this.lv('create', () => dom.create()).catch((err) => {
        throw new BuildFault(
          'DomainStartFailed',
          `libvirt could not start the domain: ${(err as Error).message}`,
          true,
          { cause: err },
        );
      });
    }
    await this.waitRunning(dom);
    const now = new Date().toISOString();
    this.d.events.record(
      inst,
      'Normal',
      'Spawned',
      `domain ${dom.name} running on ${this.d.config.nodeName}`,
    );
    return this.write(inst, {
      phase: 'Active',
      powerState: 'Running',
      domainUUID: dom.uuid,
      launchedAt: inst.status?.launchedAt ?? now,
      conditions: [
        {
          type: ConditionType.Spawned,
          status: 'True',
          reason: 'DomainStarted',
          message: `domain ${dom.name} started`,
        },
        {
          type: ConditionType.Ready,
          status: 'True',
          reason: 'Running',
          message: 'the domain is running',
        },
      ],
    });
  }

  private async defineDomain(inst: Instance): Promise<Domain> {
    const conn = await this.d.session.conn();
    const existing = await this.lookup(inst.metadata.uid);
    if (existing) return existing;
    const { flavor, image } = this.refs(inst);
    const uid = inst.metadata.uid;
    const nics = await plugNetworks(uid, inst.status?.interfaces ?? [], (n) =>
      this.d.networks.get(n),
    );
    const kernel = image.spec.kernel ? await this.directBoot(image) : undefined;
    const xml = domainXml({
      uid,
      namespace: inst.metadata.namespace,
      name: inst.metadata.name,
      node: this.d.config.nodeName,
      virtType: this.d.virtType,
      vcpus: flavor.spec.vcpus,
      memoryMiB: flavor.spec.memoryMiB,
      disks: {
        root: this.d.paths.instanceFile(uid, 'root.qcow2'),
        ...((flavor.spec.ephemeralGiB ?? 0) > 0
          ? { ephemeral: this.d.paths.instanceFile(uid, 'ephemeral.qcow2') }
          : {}),
        ...((flavor.spec.swapMiB ?? 0) > 0
          ? { swap: this.d.paths.instanceFile(uid, 'swap.qcow2') }
          : {}),
      },
      configDrive: this.d.paths.instanceFile(uid, 'cidata.iso'),
      nics,
      consoleLog: this.d.paths.instanceFile(uid, 'console.log'),
      kernel,
    });
    return this.lv('defineXML', () => conn.defineXML(xml)).catch((err) => {
      throw new BuildFault(
        'DomainDefineFailed',
        `libvirt refused the domain definition: ${(err as Error).message}`,
        false,
        { cause: err },
      );
    });
  }

  private async directBoot(
    image: IImage,
  ): Promise<{ path: string; initrd?: string; cmdline?: string }> {
    const fetch = (f: { source: string; sha256: string }, part: string) =>
      this.d.cache.ensure({
        ...image,
        metadata: { name: `${image.metadata?.name} ${part}` },
        spec: { ...image.spec, source: f.source, sha256: f.sha256 },
      });
    const spec = image.spec;
    return {
      path: await fetch(spec.kernel!, 'kernel'),
      initrd: spec.initrd ? await fetch(spec.initrd, 'initrd') : undefined,
      cmdline: spec.cmdline,
    };
  }

  /** Waits for the running event's effect, polling as a fallback for a missed event. */
  private async waitRunning(dom: Domain): Promise<void> {
    const deadline = Date.now() + RUNNING_WAIT_MS;
    for (;;) {
      const { state, reason } = await this.lv('getState', () => dom.getState());
      if (state === DomainState.RUNNING) return;
      if (state === DomainState.SHUTOFF && reason === ShutoffReason.FAILED) {
        throw new BuildFault(
          'DomainStartFailed',
          'QEMU exited while starting; see the domain log under /var/log/libvirt/qemu',
          true,
        );
      }
      if (Date.now() > deadline)
        throw new BuildFault(
          'DomainStartFailed',
          `domain not running ${RUNNING_WAIT_MS / 1000}s after start`,
          true,
        );
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  // ---- Active / Stopped: power state and runStrategy

  private async enforcePower(inst: Instance): Promise<SyncResult | void> {
    const dom = await this.lookup(inst.metadata.uid);
    if (!dom) {
      this.d.logger.warn('domain missing; defining it again', { instance: keyOf(inst) });
      const respawn = await this.write(inst, {
        phase: 'Spawning',
        conditions: [
          {
            type: ConditionType.Ready,
            status: 'False',
            reason: 'DomainMissing',
            message: 'the domain vanished from the node; redefining it',
          },
        ],
      });
      await this.step(respawn, 'spawning', () => this.spawn(respawn));
      return;
    }
    const { state, reason } = await this.lv('getState', () => dom.getState());
    const power = powerStateOf(state);
    const strategy = inst.spec.runStrategy ?? 'Always';
    // Being shut down: whatever the strategy says next depends on how it ends.
    if (state === DomainState.SHUTDOWN) return { requeueAfterMs: 1000 };
    const running =
      state === DomainState.RUNNING ||
      state === DomainState.BLOCKED ||
      state === DomainState.PAUSED;
    if (strategy === 'Halted') {
      if (running) await this.stopDomain(dom);
      return this.report(inst, 'Stopped', 'Shutdown', 'Halted', 'runStrategy is Halted');
    }
    if (running) return this.report(inst, 'Active', power, 'Running', 'the domain is running');
    const cleanShutdown = state === DomainState.SHUTOFF && reason === ShutoffReason.SHUTDOWN;
    if (strategy === 'RerunOnFailure' && cleanShutdown) {
      return this.report(
        inst,
        'Stopped',
        'Shutdown',
        'GuestShutdown',
        'the guest shut itself down; runStrategy RerunOnFailure leaves it off',
      );
    }
    // The guest comes first: with the API server unreachable, restart it anyway and report later.
    await this.report(
      inst,
      inst.status?.phase ?? 'Active',
      power,
      'Stopped',
      `the domain stopped (${shutoffReasonName(reason)}); restarting per runStrategy ${strategy}`,
    ).catch((err) =>
      this.d.logger.warn('could not report the stopped domain; restarting it anyway', {
        instance: keyOf(inst),
        error: err as Error,
      }),
    );
    const delay = this.restartDelay(inst.metadata.uid);
    if (delay > 0) return { requeueAfterMs: delay };
    this.d.metrics.restarts.inc({ reason: shutoffReasonName(reason) });
    // A lifecycle event and the resync can both get here; the second finds it running already.
    await this.lv('create', () => dom.create()).catch((err) => {
      if (!isLibvirtError(err, ErrorCode.OPERATION_INVALID)) throw err;
    });
    await this.waitRunning(dom);
    return this.report(
      this.d.instances.get(inst.metadata.name, inst.metadata.namespace) ?? inst,
      'Active',
      'Running',
      'Running',
      'the domain is running',
    );
  }

  /** Restarts back off when a domain keeps crashing: 0 s, then 2, 4, 8… within a minute. */
  private restartDelay(uid: string): number {
    const now = Date.now();
    const recent = (this.restarts.get(uid) ?? []).filter((t) => now - t < CRASH_WINDOW_MS);
    const delay = recent.length < 2 ? 0 : Math.min(1000 * 2 ** (recent.length - 1), 60_000);
    if (delay === 0 || now - (recent[recent.length - 1] ?? 0) >= delay) {
      recent.push(now);
      this.restarts.set(uid, recent);
      return 0;
    }
    this.restarts.set(uid, recent);
    return delay - (now - (recent[recent.length - 1] ?? 0));
  }

  private async report(
    inst: Instance,
    phase: Phase,
    power: PowerState,
    reason: string,
    message: string,
  ): Promise<void> {
    const ready = inst.status?.conditions?.find((c) => c.type === ConditionType.Ready);
    const readyNow = phase === 'Active' && power === 'Running';
    if (
      inst.status?.phase === phase &&
      inst.status.powerState === power &&
      ready?.reason === reason &&
      (ready.status === 'True') === readyNow
    )
      return;
    await this.write(inst, {
      phase,
      powerState: power,
      conditions: [
        { type: ConditionType.Ready, status: readyNow ? 'True' : 'False', reason, message },
      ],
    });
    this.d.events.record(inst, readyNow ? 'Normal' : 'Warning', reason, message);
  }

  /** Graceful shutdown; destroy once the grace period is over. */
  private async stopDomain(dom: Domain): Promise<void> {
    await this.lv('shutdown', () => dom.shutdown()).catch((err) => {
      if (!isLibvirtError(err, ErrorCode.OPERATION_INVALID)) throw err;
    });
    const deadline = Date.now() + this.d.config.shutdownTimeoutMs;
    while (Date.now() < deadline) {
      if ((await this.lv('getState', () => dom.getState())).state === DomainState.SHUTOFF) return;
      await new Promise((r) => setTimeout(r, 250));
    }
    await this.lv('destroy', () => dom.destroy()).catch((err) => {
      if (!isLibvirtError(err, ErrorCode.OPERATION_INVALID)) throw err;
    });
  }

  // ---- Delete

  private async teardown(inst: Instance): Promise<void> {
    if (!inst.metadata.finalizers?.includes(NODE_CLEANUP_FINALIZER)) return;
    await removeDomain(this.d, inst.metadata.uid, (dom) => this.stopDomain(dom));
    const finalizers = inst.metadata.finalizers.filter((f) => f !== NODE_CLEANUP_FINALIZER);
    await this.d.patcher.setFinalizers(
      ref(inst),
      inst.metadata.resourceVersion as string,
      finalizers,
    );
    this.d.logger.info('instance removed from node', { instance: keyOf(inst) });
  }

  // ---- helpers

  /** Runs one boot step, timing it; a build fault becomes status.fault, with the step undone. */
  private async step(inst: Instance, name: string, fn: () => Promise<Instance>): Promise<Instance> {
    const end = this.d.metrics.stepSeconds.startTimer({ step: name });
    try {
      const next = await fn();
      end({ result: 'ok' });
      return next;
    } catch (err) {
      end({ result: 'error' });
      if (!(err instanceof BuildFault)) throw err;
      this.faulted.add(inst.metadata.uid);
      await this.undo(inst, name);
      await this.reportFault(inst, name, err);
      return this.d.instances.get(inst.metadata.name, inst.metadata.namespace) ?? inst;
    }
  }

  private async undo(inst: Instance, step: string): Promise<void> {
    if (step === 'networking') return;
    await removeDomain(this.d, inst.metadata.uid, (dom) => this.lv('destroy', () => dom.destroy()));
  }

  private async reportFault(inst: Instance, step: string, fault: BuildFault): Promise<void> {
    const type =
      step === 'networking'
        ? ConditionType.NetworkReady
        : step === 'block_devices'
          ? ConditionType.BlockDevicesReady
          : ConditionType.Spawned;
    this.d.logger.warn('build step failed', {
      instance: keyOf(inst),
      step,
      error: fault,
      retryable: fault.retryable,
    });
    this.d.events.record(inst, 'Warning', fault.reason, fault.message);
    await this.write(inst, {
      fault: {
        reason: fault.reason,
        message: fault.message,
        node: this.d.config.nodeName,
        retryable: fault.retryable,
        time: new Date().toISOString(),
      },
      conditions: [{ type, status: 'False', reason: fault.reason, message: fault.message }],
    });
  }

  private refs(inst: Instance): { flavor: IFlavor; image: IImage } {
    const flavor = this.d.flavors.get(inst.spec.flavor);
    const image = this.d.images.get(inst.spec.image);
    if (!flavor)
      throw new BuildFault('FlavorNotFound', `Flavor ${inst.spec.flavor} does not exist`, false);
    if (!image)
      throw new BuildFault('ImageNotFound', `Image ${inst.spec.image} does not exist`, false);
    return { flavor, image };
  }

  private dnsOf(inst: Instance): string[] {
    const first = inst.status?.interfaces?.[0];
    return (first && this.d.networks.get(first.network)?.spec.dns) || [];
  }

  private async lookup(uid: string): Promise<Domain | undefined> {
    const conn = await this.d.session.conn();
    return this.lv('lookupByUUID', () => conn.lookupByUUID(uid)).catch((err) => {
      if (isNoDomain(err)) return undefined;
      throw err;
    });
  }

  private async lv<T>(op: string, fn: () => Promise<T>): Promise<T> {
    const end = this.d.metrics.libvirtSeconds.startTimer({ op });
    try {
      const r = await fn();
      end({ result: 'ok' });
      return r;
    } catch (err) {
      end({ result: 'error' });
      throw err;
    }
  }

  /**
   * Applies the agent's status fields. Server-side apply removes fields this manager owns and
   * omits, so every write carries all of them: the current values with the change on top.
   */
  private async write(inst: Instance, change: StatusChange): Promise<Instance> {
    const s: InstanceStatus = inst.status ?? {};
    const conditions = (s.conditions ?? []).filter(
      (c) => AGENT_CONDITIONS.has(c.type) && !change.conditions?.some((n) => n.type === c.type),
    );
    for (const c of change.conditions ?? []) conditions.push(setCondition(s.conditions, c));
    const phase = change.phase ?? (s.phase && AGENT_PHASES.has(s.phase) ? s.phase : undefined);
    const status: InstanceStatus = {
      ...(phase ? { phase } : {}),
      ...((change.powerState ?? s.powerState)
        ? { powerState: change.powerState ?? s.powerState }
        : {}),
      ...((change.domainUUID ?? s.domainUUID)
        ? { domainUUID: change.domainUUID ?? s.domainUUID }
        : {}),
      ...((change.launchedAt ?? s.launchedAt)
        ? { launchedAt: change.launchedAt ?? s.launchedAt }
        : {}),
      ...(change.fault ? { fault: change.fault } : {}),
      conditions,
    };
    try {
      return await this.d.applier.applyStatus<Instance>(
        ref(inst),
        status,
        inst.metadata.resourceVersion,
      );
    } catch (err) {
      if (apiStatus(err) === 409)
        this.d.logger.debug('stale view of the Instance; retrying', { instance: keyOf(inst) });
      throw err;
    }
  }
}

/** Stops (via `stop`), undefines and deletes the files of the Instance's domain, if present. */
export async function removeDomain(
  d: Pick<AgentDeps, 'session' | 'paths'>,
  uid: string,
  stop: (dom: Domain) => Promise<void>,
): Promise<void> {
  const conn = await d.session.conn();
  const dom = await conn.lookupByUUID(uid).catch((err) => {
    if (isNoDomain(err)) return undefined;
    throw err;
  });
  if (dom) {
    const { state } = await dom.getState();
    if (state !== DomainState.SHUTOFF)
      await stop(dom).catch((err) => {
        if (!isLibvirtError(err, ErrorCode.OPERATION_INVALID)) throw err;
      });
    await dom.undefine().catch((err) => {
      if (!isNoDomain(err)) throw err;
    });
  }
  await removeInstanceFiles(d.paths, uid);
}

export function powerStateOf(state: number): PowerState {
  switch (state) {
    case DomainState.RUNNING:
    case DomainState.BLOCKED:
      return 'Running';
    case DomainState.PAUSED:
      return 'Paused';
    case DomainState.SHUTDOWN:
    case DomainState.SHUTOFF:
      return 'Shutdown';
    case DomainState.CRASHED:
      return 'Crashed';
    case DomainState.PMSUSPENDED:
      return 'Suspended';
    default:
      return 'NoState';
  }
}

function shutoffReasonName(reason: number): string {
  const entry = Object.entries(ShutoffReason).find(([, v]) => v === reason);
  return (entry?.[0] ?? 'UNKNOWN').toLowerCase();
}

const keyOf = (inst: Instance) => `${inst.metadata.namespace}/${inst.metadata.name}`;
const ref = (inst: Instance) => ({
  apiVersion: API_VERSION,
  kind: 'Instance',
  plural: PLURAL.Instance,
  name: inst.metadata.name,
  namespace: inst.metadata.namespace,
});
