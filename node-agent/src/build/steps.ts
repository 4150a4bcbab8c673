// The node steps of a build, each an object (see step.ts). Networking is plugged once per
// build, by plugNetworksStep; defining the domain only derives the NICs (bridge and tap names).
import type { IImage, INetwork, Interface } from '@kova/crds';
import { rm } from 'node:fs/promises';
import { domainXml } from '../domain/xml.js';
import { lookupDomain, undefineDomain } from '../domain-removal.js';
import { BuildFault } from '../errors.js';
import { DomainState, ShutoffReason, type Domain } from '../libvirt/index.js';
import { lv } from '../libvirt-call.js';
import { tapName } from '../network/names.js';
import { DEFAULT_MTU, type Nic } from '../network/node-networks.js';
import { refsOf, type NodeStep, type StepContext } from './step.js';

/** How long a started domain may take to reach RUNNING. */
export const RUNNING_WAIT_MS = 30_000;
/** Poll period while waiting for the lifecycle event, for an event missed over a reconnect. */
export const RUNNING_POLL_MS = 1000;

type InstanceFile = Parameters<StepContext['d']['paths']['instanceFile']>[1];
const file = (c: StepContext, name: InstanceFile) =>
  c.d.paths.instanceFile(c.inst.metadata.uid, name);
const networksOf = (c: StepContext) =>
  (c.inst.status?.interfaces ?? []).map((i) => c.d.networks.get(i.network));

export const plugNetworksStep: NodeStep = {
  name: 'networking',
  // Every build, even with the bridges there: plugging marks the Networks in use on this node
  // until the domain holds their bridges, or a sync that saw a bridge unused (its last guest
  // just gone) could remove it under this build. Cheap, and idempotent.
  async shouldDo(c) {
    return networksOf(c).length > 0;
  },
  async do(c) {
    await c.d.host.plugNetworks(c.inst.metadata.uid, c.inst.status?.interfaces ?? [], (n) =>
      c.d.networks.get(n),
    );
  },
  async verify(c) {
    for (const net of networksOf(c))
      if (net && !(await c.d.host.bridgeExists(net.spec.bridge)))
        throw new BuildFault(
          'BridgeMissing',
          `bridge ${net.spec.bridge} is not on this node after plugging`,
          true,
        );
  },
  // Bridges are shared by every Instance on the Network; taps go with the domain.
  async undo() {},
};

export const imageStep: NodeStep = {
  name: 'image',
  // The cached base is only needed to make the root overlay.
  async shouldDo(c) {
    return !(await c.d.host.exists(file(c, 'root.qcow2')));
  },
  async do(c) {
    c.scratch.base = await recordedBase(c);
  },
  async verify(c) {
    if (!c.scratch.base || !(await c.d.host.exists(c.scratch.base)))
      throw new BuildFault(
        'ImageDownloadFailed',
        `the image cache has no file for Image ${c.inst.spec.image}`,
        true,
      );
  },
  // The cache is shared; its garbage collector removes bases nobody uses.
  async undo() {},
};

/**
 * The cached base of the root disk: the content the Instance was bound to (status.image), fetched
 * from the Image's source. Once the Image names other content, the recorded content can no
 * longer be fetched: a node that has it cached still builds, any other refuses with ImageChanged
 * rather than build from content the Instance was not given.
 */
export async function recordedBase(c: StepContext): Promise<string> {
  const { image, disk } = refsOf(c.d, c.inst);
  const cached = await c.d.host.exists(c.d.paths.image(disk.sha256));
  if (!cached && image.spec.sha256 !== disk.sha256)
    throw new BuildFault(
      'ImageChanged',
      `Image ${disk.name} now has sha256 ${image.spec.sha256}, but this Instance was bound to ${disk.sha256} (status.image), which this node has not cached; restore the Image's content, or delete and recreate the Instance to use the new one`,
      false,
    );
  return c.d.cache.ensure({
    ...image,
    spec: { ...image.spec, sha256: disk.sha256, format: disk.format as 'qcow2' | 'raw' },
  });
}

/**
 * The disks of the Flavor as recorded at binding (status.flavor). `createRoot` is false when
 * respawning a domain that vanished: its root disk holds the guest's data and a missing one is
 * an error, never a fresh disk.
 */
export function disksStep(opts: { createRoot: boolean }): NodeStep {
  const wanted = (c: StepContext) => {
    const f = refsOf(c.d, c.inst).flavor;
    return <InstanceFile[]>[
      'root.qcow2',
      ...((f.ephemeralGiB ?? 0) > 0 ? ['ephemeral.qcow2'] : []),
      ...((f.swapMiB ?? 0) > 0 ? ['swap.qcow2'] : []),
    ];
  };
  const missing = async (c: StepContext) => {
    const out: string[] = [];
    for (const f of wanted(c)) if (!(await c.d.host.exists(file(c, f)))) out.push(f);
    return out;
  };
  return {
    name: 'block_devices',
    async shouldDo(c) {
      return (await missing(c)).length > 0;
    },
    async do(c) {
      const { flavor, disk } = refsOf(c.d, c.inst);
      if (!opts.createRoot && !(await c.d.host.exists(file(c, 'root.qcow2'))))
        throw new BuildFault(
          'RootDiskMissing',
          `the root disk ${file(c, 'root.qcow2')} of this Instance is gone; restore it or delete the Instance`,
          false,
        );
      const base = c.scratch.base ?? (await recordedBase(c));
      await c.d.host.createDisks(c.d.paths, c.inst.metadata.uid, base, disk.format, flavor);
    },
    async verify(c) {
      const left = await missing(c);
      if (left.length)
        throw new BuildFault(
          'DiskCreateFailed',
          `${left.join(', ')} missing after creating the disks`,
          true,
        );
    },
    async undo(c) {
      if (opts.createRoot) await c.d.host.removeInstanceFiles(c.d.paths, c.inst.metadata.uid);
    },
  };
}

export const configDriveStep: NodeStep = {
  name: 'config_drive',
  async shouldDo(c) {
    return !(await c.d.host.exists(file(c, 'cidata.iso')));
  },
  async do(c) {
    const first = c.inst.status?.interfaces?.[0];
    await c.d.host
      .buildConfigDrive(file(c, 'cidata.iso'), {
        instanceId: c.inst.metadata.uid,
        hostname: c.inst.metadata.name,
        sshAuthorizedKeys: c.inst.spec.sshAuthorizedKeys ?? [],
        userData: c.inst.spec.userData,
        interfaces: c.inst.status?.interfaces ?? [],
        dns: (first && c.d.networks.get(first.network)?.spec.dns) || [],
      })
      .catch((err) => {
        throw new BuildFault(
          'ConfigDriveFailed',
          `could not build the config drive: ${(err as Error).message}`,
          true,
          { cause: err },
        );
      });
  },
  async verify(c) {
    if (!(await c.d.host.exists(file(c, 'cidata.iso'))))
      throw new BuildFault(
        'ConfigDriveFailed',
        'the config drive is missing after building it',
        true,
      );
  },
  async undo(c) {
    await rm(file(c, 'cidata.iso'), { force: true });
  },
};

export const defineStep: NodeStep = {
  name: 'define',
  async shouldDo(c) {
    return !(await lookup(c));
  },
  async do(c) {
    const conn = await c.d.session.conn();
    const xml = await domainXmlOf(c);
    await lv(c.d.metrics, 'defineXML', () => conn.defineXML(xml)).catch((err) => {
      throw new BuildFault(
        'DomainDefineFailed',
        `libvirt refused the domain definition: ${(err as Error).message}`,
        false,
        { cause: err },
      );
    });
  },
  async verify(c) {
    if (!(await lookup(c)))
      throw new BuildFault(
        'DomainDefineFailed',
        'the domain is not defined after defining it',
        true,
      );
  },
  async undo(c) {
    const conn = await c.d.session.conn();
    await undefineDomain(conn, c.inst.metadata.uid, (dom) =>
      lv(c.d.metrics, 'destroy', () => dom.destroy()),
    );
  },
};

export const startStep: NodeStep = {
  name: 'start',
  async shouldDo(c) {
    const dom = await lookup(c);
    return !!dom && !isRunning((await lv(c.d.metrics, 'getState', () => dom.getState())).state);
  },
  async do(c) {
    const dom = (await lookup(c)) as Domain;
    await lv(c.d.metrics, 'create', () => dom.create()).catch((err) => {
      throw new BuildFault(
        'DomainStartFailed',
        `libvirt could not start the domain: ${(err as Error).message}`,
        true,
        { cause: err },
      );
    });
  },
  // Whether it got to RUNNING is waitRunningStep's to see.
  async verify() {},
  async undo(c) {
    const dom = await lookup(c);
    if (dom && isRunning((await lv(c.d.metrics, 'getState', () => dom.getState())).state))
      await lv(c.d.metrics, 'destroy', () => dom.destroy());
  },
};

export const waitRunningStep: NodeStep = {
  name: 'wait_running',
  async shouldDo(c) {
    return !!(await lookup(c));
  },
  async do(c) {
    await waitRunning(c, (await lookup(c)) as Domain);
  },
  async verify(c) {
    const dom = await lookup(c);
    if (!dom || !isRunning((await lv(c.d.metrics, 'getState', () => dom.getState())).state))
      throw new BuildFault('DomainStartFailed', 'the domain is not running after it started', true);
  },
  async undo() {},
};

/**
 * Waits for the domain to run: each round waits for the domain's next lifecycle event, or the
 * poll period when none comes (an event can be lost across a libvirt reconnect).
 */
export async function waitRunning(c: StepContext, dom: Domain): Promise<void> {
  const deadline = Date.now() + RUNNING_WAIT_MS;
  for (;;) {
    // Subscribe before reading the state, so an event between the two is not lost.
    const event = c.d.session.nextEvent(
      dom.uuid,
      Math.min(RUNNING_POLL_MS, Math.max(0, deadline - Date.now())),
    );
    const { state, reason } = await lv(c.d.metrics, 'getState', () => dom.getState());
    if (isRunning(state)) return;
    if (state === DomainState.SHUTOFF && reason === ShutoffReason.FAILED)
      throw new BuildFault(
        'DomainStartFailed',
        'QEMU exited while starting; see the domain log under /var/log/libvirt/qemu',
        true,
      );
    if (Date.now() > deadline)
      throw new BuildFault(
        'DomainStartFailed',
        `domain not running ${RUNNING_WAIT_MS / 1000}s after start`,
        true,
      );
    await event;
  }
}

function isRunning(state: number): boolean {
  return state === DomainState.RUNNING || state === DomainState.BLOCKED;
}

async function lookup(c: StepContext): Promise<Domain | undefined> {
  const conn = await c.d.session.conn();
  return lv(c.d.metrics, 'lookupByUUID', () => lookupDomain(conn, c.inst.metadata.uid));
}

/** The NICs of the domain: bridge and tap per interface (the bridges were plugged before). */
export function nicsOf(
  uid: string,
  interfaces: Interface[],
  networkOf: (n: string) => INetwork | undefined,
): Nic[] {
  return interfaces.map((iface, i) => {
    const net = networkOf(iface.network);
    if (!net)
      throw new BuildFault('NetworkNotFound', `Network ${iface.network} does not exist`, false);
    return {
      ...iface,
      bridge: net.spec.bridge,
      tap: tapName(uid, i),
      mtu: net.spec.mtu ?? DEFAULT_MTU,
    };
  });
}

async function domainXmlOf(c: StepContext): Promise<string> {
  const { flavor, image } = refsOf(c.d, c.inst);
  const uid = c.inst.metadata.uid;
  return domainXml({
    uid,
    namespace: c.inst.metadata.namespace,
    name: c.inst.metadata.name,
    node: c.d.config.nodeName,
    virtType: c.d.virtType,
    arch: image.spec.architecture,
    vcpus: flavor.vcpus,
    memoryMiB: flavor.memoryMiB,
    disks: {
      root: file(c, 'root.qcow2'),
      ...((flavor.ephemeralGiB ?? 0) > 0 ? { ephemeral: file(c, 'ephemeral.qcow2') } : {}),
      ...((flavor.swapMiB ?? 0) > 0 ? { swap: file(c, 'swap.qcow2') } : {}),
    },
    configDrive: file(c, 'cidata.iso'),
    nics: nicsOf(uid, c.inst.status?.interfaces ?? [], (n) => c.d.networks.get(n)),
    consoleLog: file(c, 'console.log'),
    consoleSocket: file(c, 'console.sock'),
    kernel: image.spec.kernel ? await directBoot(c, image) : undefined,
  });
}

async function directBoot(
  c: StepContext,
  image: IImage,
): Promise<{ path: string; initrd?: string; cmdline?: string }> {
  const fetch = (f: { source: string; sha256: string }, part: string) =>
    c.d.cache.ensure({
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
