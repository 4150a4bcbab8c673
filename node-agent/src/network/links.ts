// The links of a managed Network on a node: its bridge (carrying the gateway address and MAC)
// and, when the node has a tunnel address, its VXLAN device on that bridge with one forwarding
// entry per other node that has Instances on the Network. Each function makes the link match
// what is asked and does nothing when it already does, so a sync can call them every time.
import { writeFile } from 'node:fs/promises';
import { BuildFault } from '../errors.js';
import { run } from '../host/exec.js';
import { bridgeAlias, gatewayMac, networkOfAlias, vxlanName, VXLAN_PORT } from './names.js';

export interface NetworkLinks {
  network: string;
  bridge: string;
  gateway: string;
  prefix: number;
  mtu: number;
  vni?: number;
}

interface LinkInfo {
  ifname: string;
  mtu: number;
  address?: string;
  ifalias?: string;
  flags?: string[];
  addr_info?: { local: string; prefixlen: number }[];
  linkinfo?: { info_kind?: string; info_data?: { id?: number; local?: string } };
}

const ZERO_MAC = '00:00:00:00:00:00';

/** The link with its details and addresses (one `ip` process: a build reads it every time). */
async function link(name: string): Promise<LinkInfo | undefined> {
  const out = await run('ip', ['-j', '-d', 'addr', 'show', 'dev', name]).catch(() => undefined);
  return out ? (JSON.parse(out) as LinkInfo[])[0] : undefined;
}

export async function linkExists(name: string): Promise<boolean> {
  return (await link(name)) !== undefined;
}

/** No IPv6 on kova's links: the same MAC on every node would give every bridge one link-local address. */
const noIpv6 = (dev: string) =>
  writeFile(`/proc/sys/net/ipv6/conf/${dev}/disable_ipv6`, '1').catch(
    (err: Error & { code?: string }) => {
      if (err.code !== 'ENOENT') throw err; // a kernel without IPv6
    },
  );

export async function ensureBridge(l: NetworkLinks): Promise<void> {
  let br = await link(l.bridge);
  // Never take over a link kova did not make for this Network (eth0, docker0, cni0, …).
  if (br && !(await madeFor(br, l.network)))
    throw new BuildFault(
      'BridgeInUse',
      `link ${l.bridge} already exists on this node and is not the bridge kova made for Network ${l.network}; set another spec.bridge, or delete the link if it is a leftover (ip link delete ${l.bridge})`,
      false,
    );
  if (!br) await run('ip', ['link', 'add', 'name', l.bridge, 'type', 'bridge']);
  if (br?.ifalias !== bridgeAlias(l.network)) {
    await run('ip', ['link', 'set', 'dev', l.bridge, 'alias', bridgeAlias(l.network)]);
    br = await link(l.bridge);
  }
  await noIpv6(l.bridge);
  if (br && bridgeAsWanted(br, l)) return;
  if (l.vni !== undefined && br?.address !== gatewayMac(l.vni))
    await run('ip', ['link', 'set', 'dev', l.bridge, 'address', gatewayMac(l.vni)]);
  await run('ip', ['addr', 'replace', `${l.gateway}/${l.prefix}`, 'dev', l.bridge]);
  await run('ip', ['link', 'set', 'dev', l.bridge, 'mtu', String(l.mtu), 'up']);
}

/** Up, with the Network's MTU, gateway address and (with a VNI) the gateway MAC. */
function bridgeAsWanted(br: LinkInfo, l: NetworkLinks): boolean {
  return (
    !!br.flags?.includes('UP') &&
    br.mtu === l.mtu &&
    (l.vni === undefined || br.address === gatewayMac(l.vni)) &&
    !!br.addr_info?.some((a) => a.local === l.gateway && a.prefixlen === l.prefix)
  );
}

/**
 * Whether an existing link is the bridge kova made for this Network: marked so, or a bridge an
 * agent stopped between creating and marking it (unmarked, no port, no address).
 */
async function madeFor(br: LinkInfo, network: string): Promise<boolean> {
  if (br.linkinfo?.info_kind !== 'bridge') return false;
  if (br.ifalias !== undefined) return br.ifalias === bridgeAlias(network);
  const out = await run('ip', ['-j', 'addr', 'show', 'dev', br.ifname]);
  const addrs = (JSON.parse(out) as { addr_info?: unknown[] }[])[0]?.addr_info ?? [];
  return addrs.length === 0 && (await ports(br.ifname)).length === 0;
}

/** The Network's VXLAN device from `local`, on its bridge; remade if its VNI or address moved. */
export async function ensureVxlan(l: NetworkLinks & { vni: number }, local: string): Promise<void> {
  const dev = vxlanName(l.vni);
  const vx = await link(dev);
  const data = vx?.linkinfo?.info_data;
  if (vx && (data?.id !== l.vni || data?.local !== local))
    await run('ip', ['link', 'delete', 'dev', dev]);
  if (!vx || data?.id !== l.vni || data?.local !== local) {
    // nolearning stays off: the bridge learns remote MACs, the device which node they are on.
    await run('ip', [
      'link',
      'add',
      dev,
      'type',
      'vxlan',
      'id',
      String(l.vni),
      'local',
      local,
      'dstport',
      String(VXLAN_PORT),
    ]);
  }
  await noIpv6(dev);
  await run('ip', ['link', 'set', 'dev', dev, 'master', l.bridge, 'mtu', String(l.mtu), 'up']);
}

/**
 * Broadcast, unknown unicast and multicast go to exactly these nodes (head-end replication):
 * one all-zero entry per peer, none for nodes without Instances on the Network.
 */
export async function syncFlooding(vni: number, peers: string[]): Promise<void> {
  const dev = vxlanName(vni);
  const out = await run('bridge', ['-j', 'fdb', 'show', 'dev', dev]);
  const have = new Set(
    (JSON.parse(out || '[]') as { mac: string; dst?: string }[])
      .filter((e) => e.mac === ZERO_MAC && e.dst)
      .map((e) => e.dst as string),
  );
  for (const peer of peers)
    if (!have.has(peer)) await run('bridge', ['fdb', 'append', ZERO_MAC, 'dev', dev, 'dst', peer]);
  for (const old of have)
    if (!peers.includes(old)) await run('bridge', ['fdb', 'del', ZERO_MAC, 'dev', dev, 'dst', old]);
}

/** Bridges kova made, by Network name (from their alias). */
export async function ownedBridges(): Promise<Map<string, string>> {
  const out = await run('ip', ['-j', '-d', 'link', 'show', 'type', 'bridge']);
  const owned = new Map<string, string>();
  for (const br of JSON.parse(out || '[]') as LinkInfo[]) {
    const network = networkOfAlias(br.ifalias);
    if (network) owned.set(network, br.ifname);
  }
  return owned;
}

async function ports(bridge: string): Promise<LinkInfo[]> {
  const out = await run('ip', ['-j', '-d', 'link', 'show', 'master', bridge]);
  return JSON.parse(out || '[]') as LinkInfo[];
}

/**
 * Removes a Network's bridge and VXLAN device once no guest is plugged into it (a tap left means
 * a domain still uses it: keep it). Returns whether it was removed.
 */
export async function removeUnusedBridge(bridge: string): Promise<boolean> {
  const attached = await ports(bridge);
  if (attached.some((p) => p.linkinfo?.info_kind !== 'vxlan')) return false;
  for (const vx of attached) await run('ip', ['link', 'delete', 'dev', vx.ifname]);
  await run('ip', ['link', 'delete', 'dev', bridge]);
  return true;
}

/** MTU of the link that carries an address (the node's underlay). */
export async function mtuOfAddress(address: string): Promise<number | undefined> {
  const out = await run('ip', ['-j', 'addr', 'show']);
  const links = JSON.parse(out) as (LinkInfo & { addr_info?: { local: string }[] })[];
  return links.find((l) => l.addr_info?.some((a) => a.local === address))?.mtu;
}
