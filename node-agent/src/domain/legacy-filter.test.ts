// A domain an earlier agent defined with libvirt's nwfilter, against the real libvirtd's test
// driver: its persistent definition loses the filter, and nothing else of it changes.
import { afterAll, describe, expect, it } from '@jest/globals';
import { logger } from '@kova/controller-kit';
import { randomUUID } from 'node:crypto';
import { open, type Connection } from '../libvirt/index.js';
import { dropLegacyFilters, withoutFilterRefs } from './legacy-filter.js';
import { KOVA_XMLNS } from './xml.js';

const legacyXml = (uid: string, node: string) => `<domain type="test">
  <name>kova-legacy-${uid.slice(0, 8)}</name>
  <uuid>${uid}</uuid>
  <metadata><kova:instance xmlns:kova="${KOVA_XMLNS}" namespace="ns" name="old" uid="${uid}" node="${node}"/></metadata>
  <memory unit="MiB">128</memory>
  <os><type arch="x86_64">hvm</type></os>
  <devices>
    <interface type="network">
      <mac address="fa:16:3e:00:00:05"/>
      <source network="default"/>
      <filterref filter="clean-traffic"><parameter name="IP" value="10.0.0.5"/></filterref>
    </interface>
  </devices>
</domain>`;

let conn: Connection | undefined;
afterAll(async () => conn?.close());

describe('the nwfilter of domains an earlier agent defined', () => {
  it('is taken out of the XML, and only it', () => {
    const out = withoutFilterRefs(legacyXml(randomUUID(), 'n1'));
    expect(out).not.toContain('filterref');
    expect(out).toContain('<mac address="fa:16:3e:00:00:05"/>');
    expect(out).toContain(KOVA_XMLNS);
  });

  it("is dropped from this node's domains, and other nodes' are left alone", async () => {
    conn = await open('test:///default');
    const [mine, other] = [randomUUID(), randomUUID()];
    await conn.defineXML(legacyXml(mine, 'n1'));
    await conn.defineXML(legacyXml(other, 'n2'));
    await dropLegacyFilters(conn, 'n1', logger('legacy-filter-test'));
    const xmlOf = async (uid: string) => (await conn!.lookupByUUID(uid)).getXMLDesc(2);
    expect(await xmlOf(mine)).not.toContain('filterref');
    expect(await xmlOf(mine)).toContain('fa:16:3e:00:00:05');
    expect(await xmlOf(other)).toContain('filterref');
  });
});
