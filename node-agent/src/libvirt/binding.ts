// Typed face of the native binding (node-agent/native). Every method that talks to libvirt
// returns a Promise and runs off the JavaScript thread; failures reject with LibvirtError.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCode } from './constants.js';

export interface LibvirtError extends Error {
  /** libvirt's virErrorNumber, e.g. ErrorCode.NO_DOMAIN. */
  code: number;
  /** libvirt's virErrorDomain (which subsystem raised it). */
  domain: number;
}

export interface NodeInfo {
  model: string;
  memoryKiB: number;
  cpus: number;
  mhz: number;
  nodes: number;
  sockets: number;
  cores: number;
  threads: number;
}

export interface Versions {
  libvirt: string;
  hypervisor: string;
  /** Driver name, e.g. QEMU or TEST. */
  type: string;
}

export interface DomainInfo {
  state: number;
  maxMemoryKiB: number;
  memoryKiB: number;
  vcpus: number;
  cpuTimeNs: number;
}

export interface LifecycleEventData {
  uuid: string;
  name: string;
  event: number;
  detail: number;
}

export interface Domain {
  readonly name: string;
  readonly uuid: string;
  create(flags?: number): Promise<void>;
  shutdown(flags?: number): Promise<void>;
  destroy(flags?: number): Promise<void>;
  reboot(flags?: number): Promise<void>;
  suspend(): Promise<void>;
  resume(): Promise<void>;
  undefine(flags?: number): Promise<void>;
  getState(): Promise<{ state: number; reason: number }>;
  getInfo(): Promise<DomainInfo>;
  getXMLDesc(flags?: number): Promise<string>;
  /** Running domain's id, or -1 when it is not running. */
  getId(): number;
}

export interface Connection {
  close(): Promise<void>;
  isAlive(): boolean;
  setKeepAlive(intervalSeconds: number, count: number): Promise<void>;
  nodeInfo(): Promise<NodeInfo>;
  versions(): Promise<Versions>;
  /**
   * libvirt's domain capabilities XML for a domain type (kvm, qemu) with the host's default
   * emulator; fails (INVALID_ARG, CONFIG_UNSUPPORTED) when the host does not offer that type.
   */
  domainCapabilities(virtType: string): Promise<string>;
  listAllDomains(flags?: number): Promise<Domain[]>;
  lookupByUUID(uuid: string): Promise<Domain>;
  lookupByName(name: string): Promise<Domain>;
  defineXML(xml: string): Promise<Domain>;
  /**
   * Calls back for every lifecycle event of every domain; resolves to libvirt's callback id once
   * the daemon has registered it (off the JavaScript thread, like every daemon call).
   */
  onLifecycleEvent(callback: (e: LifecycleEventData) => void): Promise<number>;
  /** Calls back once when the connection closes underneath us (daemon gone, keepalive lost). */
  onClose(callback: (reason: number) => void): void;
}

interface NativeModule {
  Connection: { open(uri: string): Promise<Connection> };
}

const nativePath = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'native',
  'build',
  'Release',
  'kova_libvirt.node',
);
const native = createRequire(import.meta.url)(nativePath) as NativeModule;

/** Opens a libvirt connection, e.g. qemu:///system or test:///default. */
export function open(uri: string): Promise<Connection> {
  return native.Connection.open(uri);
}

/** Duck-typed: errors from the addon may come from another realm (jest's vm contexts). */
export function isLibvirtError(err: unknown, code?: number): err is LibvirtError {
  const c = (err as { code?: unknown } | null)?.code;
  return (
    typeof c === 'number' &&
    typeof (err as { message?: unknown }).message === 'string' &&
    (code === undefined || c === code)
  );
}

export const isNoDomain = (err: unknown) => isLibvirtError(err, ErrorCode.NO_DOMAIN);
