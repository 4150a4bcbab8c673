// Hostile strings in names, keys and paths stay data: the XML is well-formed and means what it
// should, with nothing escaping into other elements.
import { describe, expect, it } from '@jest/globals';
import { create } from 'xmlbuilder2';
import { domainXml, filesOf, ownerOf, type DomainSpec } from './xml.js';

const spec = (over: Partial<DomainSpec> = {}): DomainSpec => ({
  uid: '0b7c6a2e-1f0e-4c3a-9d6e-5a4b3c2d1e0f',
  namespace: 'default',
  name: 'web-1',
  node: 'node-a',
  virtType: 'qemu',
  vcpus: 2,
  memoryMiB: 512,
  disks: { root: '/var/lib/kova/instances/x/root.qcow2' },
  configDrive: '/var/lib/kova/instances/x/cidata.iso',
  nics: [
    {
      network: 'default',
      ip: '10.0.0.5',
      mac: 'fa:16:3e:00:00:05',
      bridge: 'br0',
      tap: 'kv0b7c6a2e1f0e0',
      mtu: 1500,
    },
  ],
  consoleLog: '/var/lib/kova/instances/x/console.log',
  consoleSocket: '/var/lib/kova/instances/x/console.sock',
  ...over,
});

const hostile = [
  `"><devices><disk type='file'><source file='/etc/shadow'/></disk></devices><x a="`,
  `</name><vcpu>64</vcpu><name>`,
  `]]><!ENTITY x SYSTEM "file:///etc/passwd">&x;`,
  'ünïcödé 💥',
  `a'b"c<d>e&f`,
];

const parse = (xml: string) =>
  create(xml).end({ format: 'object' }) as { domain: Record<string, unknown> };

describe('domain XML', () => {
  it('carries the Instance UID as domain UUID and kova ownership in <metadata>', () => {
    const xml = domainXml(spec());
    expect(parse(xml).domain.uuid).toBe('0b7c6a2e-1f0e-4c3a-9d6e-5a4b3c2d1e0f');
    expect(ownerOf(xml)).toEqual({
      namespace: 'default',
      name: 'web-1',
      uid: '0b7c6a2e-1f0e-4c3a-9d6e-5a4b3c2d1e0f',
      node: 'node-a',
    });
    expect(xml).toContain('<domain type="qemu">');
  });

  it.each(hostile)('keeps the hostile string %j inside its attribute', (evil) => {
    const xml = domainXml(spec({ name: evil, namespace: evil }));
    const doc = parse(xml);
    const devices = doc.domain.devices as Record<string, unknown>;
    const disks = ([] as unknown[]).concat(devices.disk);
    expect(disks).toHaveLength(2);
    expect(JSON.stringify(disks)).not.toContain('/etc/shadow');
    expect(doc.domain.vcpu).toBe('2');
    expect(ownerOf(xml)?.name).toBe(evil);
    expect(xml).not.toContain('<!ENTITY');
  });

  it('puts the serial console on a socket for the console endpoint and logs it all to a file', () => {
    const devices = parse(domainXml(spec())).domain.devices as Record<string, unknown>;
    expect(devices.serial).toEqual({
      '@type': 'unix',
      source: { '@mode': 'bind', '@path': '/var/lib/kova/instances/x/console.sock' },
      log: { '@file': '/var/lib/kova/instances/x/console.log', '@append': 'on' },
      target: { '@port': '0' },
    });
  });

  it("boots the Image's architecture, not always x86_64", () => {
    expect(domainXml(spec())).toContain(`<type arch="x86_64" machine="pc">hvm</type>`);
    expect(domainXml(spec({ arch: 'aarch64' }))).toContain(
      `<type arch="aarch64" machine="virt">hvm</type>`,
    );
  });

  it("is not fooled by a domain whose metadata merely looks like kova's", () => {
    expect(ownerOf("<domain><metadata><instance uid='x'/></metadata></domain>")).toBeUndefined();
  });

  it('#12.15 gives each NIC its own MAC on its tap, with no libvirt nwfilter (kova nftables guards it)', () => {
    const iface = (parse(domainXml(spec())).domain.devices as Record<string, unknown>)
      .interface as Record<string, unknown>;
    expect(iface.mac).toEqual({ '@address': 'fa:16:3e:00:00:05' });
    expect(iface.filterref).toBeUndefined();
  });

  it('#12.8 lists the host files a domain opens: disks and their backing store, kernel, initrd', () => {
    const xml = domainXml(
      spec({ kernel: { path: '/k/vmlinuz', initrd: '/k/initrd.img', cmdline: 'quiet' } }),
    ).replace(
      '<target dev="vda"',
      '<backingStore type="file"><source file="/var/lib/kova/images/base.img"/></backingStore><target dev="vda"',
    );
    expect(filesOf(xml).sort()).toEqual(
      [
        '/var/lib/kova/instances/x/root.qcow2',
        '/var/lib/kova/images/base.img',
        '/var/lib/kova/instances/x/cidata.iso',
        '/k/vmlinuz',
        '/k/initrd.img',
      ].sort(),
    );
  });
});
