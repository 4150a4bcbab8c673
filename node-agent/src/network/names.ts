// Names and addresses kova gives the links of a Network on a node. All are derived, never
// stored: any agent, after any restart, finds what it made from the Network and the Instance.

/** Linux allows 15 characters: "kv" + 12 hex of the UID + the NIC index. */
export function tapName(uid: string, index: number): string {
  return `kv${uid.replace(/-/g, '').slice(0, 12)}${index.toString(16)}`;
}

/** The Network's VXLAN device on every node: "kvx" + the VNI (at most 8 digits). */
export const vxlanName = (vni: number) => `kvx${vni}`;

/**
 * The gateway's MAC, the same on every node (a distributed gateway): locally administered
 * 02:6b:76 ("kv") + the VNI's three bytes. A guest keeps one ARP entry for its gateway wherever
 * it runs, and the ruleset keeps each node's gateway from answering across the overlay.
 */
export function gatewayMac(vni: number): string {
  const bytes = [vni >> 16, (vni >> 8) & 0xff, vni & 0xff];
  return ['02', '6b', '76', ...bytes.map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

/** Set as the bridge's alias: marks a bridge kova made, and for which Network. */
const ALIAS_PREFIX = 'kova-network:';
export const bridgeAlias = (network: string) => `${ALIAS_PREFIX}${network}`;
export const networkOfAlias = (alias: string | undefined) =>
  alias?.startsWith(ALIAS_PREFIX) ? alias.slice(ALIAS_PREFIX.length) : undefined;

/** VXLAN adds 50 bytes to a guest frame on an IPv4 underlay (outer IP, UDP, VXLAN, Ethernet). */
export const VXLAN_OVERHEAD = 50;
export const VXLAN_PORT = 4789;
