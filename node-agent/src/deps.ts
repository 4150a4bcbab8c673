// What the agent's reconciler needs from the world, as narrow interfaces: the real agent passes
// informers, libvirt and the host; unit tests pass fakes and check what was called.
import type { EventRecorder, Informer, KubeObject, Logger, Patcher } from '@kova/controller-kit';
import type {
  IFlavor,
  IImage,
  INetwork,
  InstanceActionObject,
  InstanceObject,
  Interface,
} from '@kova/crds';
import { rename, rm, stat } from 'node:fs/promises';
import type { AgentConfig } from './config.js';
import type { LibvirtSession } from './host/libvirt-session.js';
import type { StatePaths } from './host/paths.js';
import type { AgentMetrics } from './metrics.js';
import { buildConfigDrive, type ConfigDriveInput } from './steps/config-drive.js';
import { createDisks, removeInstanceFiles, type Disks } from './steps/disks.js';
import type { ImageCache } from './steps/image-cache.js';
import { linkExists } from './network/links.js';
import type { Nic, NodeNetworks } from './network/node-networks.js';

export type Instance = InstanceObject;

/** The host-side work of a build (commands and files), behind one seam for the unit tests. */
export interface HostOps {
  plugNetworks(
    uid: string,
    interfaces: Interface[],
    networkOf: (name: string) => INetwork | undefined,
  ): Promise<Nic[]>;
  createDisks(
    paths: StatePaths,
    uid: string,
    base: string,
    baseFormat: string,
    flavor: IFlavor['spec'],
  ): Promise<Disks>;
  removeInstanceFiles(paths: StatePaths, uid: string): Promise<void>;
  buildConfigDrive(path: string, input: ConfigDriveInput): Promise<void>;
  exists(path: string): Promise<boolean>;
  /** Removes one file; a missing one is no error. */
  removeFile(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  bridgeExists(name: string): Promise<boolean>;
}

/** The real host: commands and files, and the node's Networks. */
export function realHost(networks: NodeNetworks): HostOps {
  return {
    plugNetworks: (uid, interfaces, networkOf) => networks.plug(uid, interfaces, networkOf),
    createDisks,
    removeInstanceFiles,
    buildConfigDrive,
    exists: (p) =>
      stat(p).then(
        () => true,
        () => false,
      ),
    removeFile: (p) => rm(p, { force: true }),
    rename,
    bridgeExists: linkExists,
  };
}

type Lookup<T extends KubeObject> = Pick<Informer<T>, 'get'>;

export interface AgentDeps {
  config: AgentConfig;
  virtType: 'kvm' | 'qemu' | 'test';
  session: Pick<LibvirtSession, 'conn' | 'nextEvent'>;
  instances: Pick<Informer<Instance>, 'get' | 'list'>;
  /** The InstanceActions handed to this node (status.nodeName). */
  actions: Pick<Informer<InstanceActionObject>, 'list'>;
  flavors: Lookup<IFlavor>;
  images: Lookup<IImage>;
  networks: Lookup<INetwork>;
  cache: Pick<ImageCache, 'ensure'>;
  paths: StatePaths;
  patcher: Pick<Patcher, 'setFinalizers' | 'mergeStatus'>;
  events: Pick<EventRecorder, 'record'>;
  metrics: AgentMetrics;
  logger: Logger;
  host: HostOps;
}

export const keyOf = (inst: Instance) => `${inst.metadata.namespace}/${inst.metadata.name}`;
