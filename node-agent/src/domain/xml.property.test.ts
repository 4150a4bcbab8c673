// Property tests of the domain XML builder: for any strings in the fields a user or admin can
// choose (Instance name and namespace, node, kernel command line, bridge), the XML either is
// refused with an error or is well-formed, has exactly the shape of a benign domain, and reads
// back the very same values. Nothing can escape into another element.
import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { create } from 'xmlbuilder2';
import { domainXml, ownerOf, type DomainSpec } from './xml.js';

const base: DomainSpec = {
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
  kernel: { path: '/var/lib/kova/images/k.img', cmdline: 'console=ttyS0' },
};

/** Element paths in document order: the shape of the domain, whatever its text and attributes. */
function shape(xml: string): string[] {
  const out: string[] = [];
  const walk = (
    node: { node: { childNodes: ArrayLike<{ nodeType: number; nodeName: string }> } } | unknown,
    path: string,
  ) => {
    const n = node as { nodeType: number; nodeName: string; childNodes: ArrayLike<unknown> };
    for (const child of Array.from(n.childNodes) as {
      nodeType: number;
      nodeName: string;
      childNodes: ArrayLike<unknown>;
    }[]) {
      if (child.nodeType !== 1) continue;
      out.push(`${path}/${child.nodeName}`);
      walk(child, `${path}/${child.nodeName}`);
    }
  };
  walk(create(xml).node, '');
  return out;
}

/** Reads values back through the DOM, as libvirt's parser would see them. */
function readBack(xml: string): { cmdline?: string | null; bridge?: string | null } {
  const doc = create({ skipWhitespaceOnlyText: false }, xml).node as unknown as {
    getElementsByTagName(t: string): ArrayLike<{
      textContent: string | null;
      getAttribute(a: string): string | null;
      hasAttribute(a: string): boolean;
    }>;
  };
  const bridgeSource = Array.from(doc.getElementsByTagName('source')).find((e) =>
    e.hasAttribute('bridge'),
  );
  return {
    cmdline: doc.getElementsByTagName('cmdline')[0]?.textContent,
    bridge: bridgeSource?.getAttribute('bridge'),
  };
}

// Strings rich in XML metacharacters, markup fragments and arbitrary Unicode.
const hostile = fc.oneof(
  fc.fullUnicodeString({ maxLength: 40 }),
  fc
    .array(
      fc.constantFrom(
        '<',
        '>',
        '&',
        '"',
        "'",
        ']]>',
        '<!--',
        '-->',
        '<!ENTITY x SYSTEM "file:///etc/passwd">',
        '&x;',
        '</name>',
        '<vcpu>64</vcpu>',
        '\n',
        'a',
      ),
      { maxLength: 12 },
    )
    .map((a) => a.join('')),
);

describe('domain XML under arbitrary input (property)', () => {
  it('stays well-formed, keeps its shape and reads back every value, or refuses', () => {
    const benign = shape(domainXml(base));
    fc.assert(
      fc.property(
        hostile,
        hostile,
        hostile,
        hostile,
        hostile,
        (name, namespace, node, cmdline, bridge) => {
          let xml: string;
          try {
            xml = domainXml({
              ...base,
              name,
              namespace,
              node,
              kernel: { ...base.kernel!, cmdline },
              nics: [{ ...base.nics[0]!, bridge }],
            });
          } catch (err) {
            expect(err).toBeInstanceOf(Error); // e.g. a character XML 1.0 cannot carry
            return;
          }
          expect(shape(xml)).toEqual(
            cmdline ? benign : benign.filter((p) => !p.endsWith('/cmdline')),
          );
          expect(ownerOf(xml)).toEqual({ namespace, name, uid: base.uid, node });
          expect(readBack(xml)).toEqual({ cmdline: cmdline || undefined, bridge });
          expect(xml).not.toContain('<!ENTITY');
        },
      ),
      { numRuns: 500 },
    );
  });
});
