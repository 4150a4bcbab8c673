// The libvirt domain XML of an Instance, built as a document tree by xmlbuilder2 so every user
// string lands escaped in the attribute or text node it belongs to. The domain UUID is the
// Instance UID; kova's ownership sits in <metadata>, which the garbage collector reads back.
import { create } from 'xmlbuilder2';
import type { Disks } from '../steps/disks.js';
import type { Nic } from '../network/node-networks.js';

export const KOVA_XMLNS = 'https://kova.dev/xmlns/instance/v1';

export interface DomainSpec {
  uid: string;
  namespace: string;
  name: string;
  node: string;
  virtType: 'kvm' | 'qemu' | 'test';
  /** The guest's architecture: the Image's, which the scheduler matched to the hypervisor. */
  arch?: 'x86_64' | 'aarch64';
  vcpus: number;
  memoryMiB: number;
  disks: Disks;
  configDrive: string;
  nics: Nic[];
  consoleLog: string;
  /** Unix socket of the serial console, which the agent's console endpoint attaches to. */
  consoleSocket: string;
  kernel?: { path: string; initrd?: string; cmdline?: string };
}

/** libvirt domain names must be unique per host: namespace and name, with the UID to be sure. */
export function domainName(namespace: string, name: string, uid: string): string {
  return `kova-${namespace}_${name}-${uid.slice(0, 8)}`;
}

export function domainXml(s: DomainSpec): string {
  const doc = create({ version: '1.0' });
  const domain = doc.ele('domain', { type: s.virtType });
  domain.ele('name').txt(domainName(s.namespace, s.name, s.uid));
  domain.ele('uuid').txt(s.uid);
  domain.ele('metadata').ele(KOVA_XMLNS, 'kova:instance', {
    namespace: s.namespace,
    name: s.name,
    uid: s.uid,
    node: s.node,
  });
  domain.ele('memory', { unit: 'MiB' }).txt(String(s.memoryMiB));
  domain.ele('vcpu').txt(String(s.vcpus));
  const os = domain.ele('os');
  const arch = s.arch ?? 'x86_64';
  os.ele('type', { arch, machine: arch === 'aarch64' ? 'virt' : 'pc' }).txt('hvm');
  if (s.kernel) {
    os.ele('kernel').txt(s.kernel.path);
    if (s.kernel.initrd) os.ele('initrd').txt(s.kernel.initrd);
    if (s.kernel.cmdline) os.ele('cmdline').txt(s.kernel.cmdline);
  } else {
    os.ele('boot', { dev: 'hd' });
  }
  domain.ele('features').ele('acpi');
  if (s.virtType === 'kvm') domain.ele('cpu', { mode: 'host-passthrough' });
  domain.ele('on_poweroff').txt('destroy');
  domain.ele('on_reboot').txt('restart');
  domain.ele('on_crash').txt('destroy');
  const devices = domain.ele('devices');
  const disk = (
    file: string,
    dev: string,
    opts: { device?: string; bus?: string; type?: string; readonly?: boolean } = {},
  ) => {
    const d = devices.ele('disk', { type: 'file', device: opts.device ?? 'disk' });
    d.ele('driver', { name: 'qemu', type: opts.type ?? 'qcow2', cache: 'none', discard: 'unmap' });
    d.ele('source', { file });
    d.ele('target', { dev, bus: opts.bus ?? 'virtio' });
    if (opts.readonly) d.ele('readonly');
  };
  disk(s.disks.root, 'vda');
  if (s.disks.ephemeral) disk(s.disks.ephemeral, 'vdb');
  if (s.disks.swap) disk(s.disks.swap, 'vdc');
  disk(s.configDrive, 'sda', { device: 'cdrom', bus: 'sata', type: 'raw', readonly: true });
  for (const nic of s.nics) {
    const iface = devices.ele('interface', { type: 'bridge' });
    iface.ele('mac', { address: nic.mac });
    iface.ele('source', { bridge: nic.bridge });
    iface.ele('target', { dev: nic.tap });
    iface.ele('model', { type: 'virtio' });
    iface.ele('mtu', { size: String(nic.mtu) });
  }
  // The serial port is a socket QEMU listens on (one client at a time: the agent's console
  // endpoint) and everything it prints is also appended to the log, connected or not.
  const serial = devices.ele('serial', { type: 'unix' });
  serial.ele('source', { mode: 'bind', path: s.consoleSocket });
  serial.ele('log', { file: s.consoleLog, append: 'on' });
  serial.ele('target', { port: '0' });
  devices.ele('console', { type: 'unix' }).ele('target', { type: 'serial', port: '0' });
  devices.ele('memballoon', { model: 'none' });
  return doc.end({ prettyPrint: true });
}

/** Reads kova's ownership back out of a domain's XML; undefined for domains kova did not make. */
export function ownerOf(
  xml: string,
): { namespace: string; name: string; uid: string; node: string } | undefined {
  const root = create(xml).root().node as unknown as Element;
  const inst = root.getElementsByTagNameNS(KOVA_XMLNS, 'instance')[0];
  if (!inst) return undefined;
  const attr = (n: string) => inst.getAttribute(n) ?? '';
  return { namespace: attr('namespace'), name: attr('name'), uid: attr('uid'), node: attr('node') };
}

/**
 * Host files a domain's QEMU opens by name: its disks (with any backing store libvirt lists)
 * and a direct-boot kernel and initrd. The image garbage collector keeps all of them.
 */
export function filesOf(xml: string): string[] {
  const root = create(xml).root().node as unknown as Element;
  const files: string[] = [];
  for (const disk of Array.from(root.getElementsByTagName('disk')))
    for (const source of Array.from(disk.getElementsByTagName('source'))) {
      const file = source.getAttribute('file');
      if (file) files.push(file);
    }
  for (const tag of ['kernel', 'initrd'])
    for (const el of Array.from(root.getElementsByTagName(tag)))
      if (el.textContent) files.push(el.textContent.trim());
  return files;
}
