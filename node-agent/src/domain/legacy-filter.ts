// Domains defined by earlier agents carry libvirt's nwfilter clean-traffic on each NIC, which
// kova's nftables chains now replace (ruleset.ts). Left in place, each start of such a domain
// pays about a second for it, and libvirt's nwfilter fails a start when another ruleset
// transaction (kova's, on every plug) lands in between. An agent rewrites their persistent
// definitions without it once, at start: a running guest keeps its filter until it stops, and
// starts without one.
import type { Logger } from '@kova/controller-kit';
import { create } from 'xmlbuilder2';
import { isNoDomain, type Connection } from '../libvirt/index.js';
import { ownerOf } from './xml.js';

/** virDomainXMLFlags VIR_DOMAIN_XML_INACTIVE: the persistent definition, not the live one. */
const XML_INACTIVE = 2;

export async function dropLegacyFilters(
  conn: Connection,
  nodeName: string,
  logger: Logger,
): Promise<void> {
  for (const dom of await conn.listAllDomains()) {
    const xml = await dom.getXMLDesc(XML_INACTIVE).catch((err) => {
      if (isNoDomain(err)) return undefined;
      throw err;
    });
    if (!xml?.includes('<filterref') || ownerOf(xml)?.node !== nodeName) continue;
    await conn.defineXML(withoutFilterRefs(xml));
    logger.info('dropped the nwfilter of a domain an older agent defined', { domain: dom.name });
  }
}

export function withoutFilterRefs(xml: string): string {
  const doc = create(xml);
  const root = doc.root().node as unknown as Element;
  for (const ref of Array.from(root.getElementsByTagName('filterref')))
    ref.parentNode?.removeChild(ref);
  return doc.end({ prettyPrint: true });
}
