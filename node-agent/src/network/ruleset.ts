// kova's nftables ruleset on a node, rendered whole from the managed Networks the node has
// Instances on, and applied in one `nft -f` transaction (firewall.ts): a Network that is gone
// from the list is gone from the rules, and nothing of kova's outlives the last Network.
//
// table inet kova — guests against the node and between Networks:
//   input:   a guest reaches nothing on the node (the gateway address is the node's, and every
//            service on 0.0.0.0 with it) except replies to connections the node opened.
//   forward: bridged traffic within a Network passes (br_netfilter shows it here as bridge to
//            the same bridge); replies pass; a Network with egress may open connections to
//            anything that is not a guest Network, the nodes' VXLAN port or a link-local address;
//            nothing else is routed into or out of a Network, so two Networks never reach each
//            other through a node. A bridge kova made that still has guests but no Network here
//            any more (refused, renamed, its Instance rebound) keeps the guard and isolation.
//   postrouting: egress is masqueraded to the node's address (KubeVirt's masquerade binding).
// table bridge kova — the distributed gateway: every node's bridge carries the gateway address
//   with the same MAC, so no frame from a gateway and no ARP about the gateway may cross the
//   overlay; each guest is answered by the gateway of the node it runs on.
//   prerouting: anti-spoofing, what libvirt's nwfilter clean-traffic did (which cost about a
//   second per domain start, spent in ebtables and iptables processes): a frame from a guest's
//   tap must carry the NIC's own MAC, IPv4 packets its own address (or a DHCP request from
//   0.0.0.0), ARP its own MAC and address; anything but IPv4, ARP and RARP (QEMU's announce
//   after a migration) is dropped. Rules match the tap by name, so they hold from the moment
//   libvirt creates it; a tap named as kova names them that no Instance here has (a guest left
//   behind on a node that was down, its Instance since moved) sends nothing at all.

import { VXLAN_PORT } from './names.js';

export interface GuardedNetwork {
  name: string;
  bridge: string;
  cidr: string;
  gateway: string;
  egress: boolean;
  /** The VXLAN device and the gateway MAC, when the Network spans nodes from here. */
  overlay?: { device: string; gatewayMac: string };
}

/** A guest NIC on this node: its tap, and the only MAC and IPv4 address it may send from. */
export interface GuestNic {
  tap: string;
  mac: string;
  ip: string;
}

export const TABLE = 'kova';

const q = (name: string) => `"${name}"`;
const set = (name: string, members: string[]) =>
  `  set ${name} {\n    type ifname\n${members.length ? `    elements = { ${members.map(q).join(', ')} }\n` : ''}  }`;
const chain = (name: string, hook: string, rules: string[], type = 'filter', prio = 'filter') =>
  `  chain ${name} {\n    type ${type} hook ${hook} priority ${prio}; policy accept;\n${rules.map((r) => `    ${r}\n`).join('')}  }`;
const table = (family: string, body: string[]) =>
  `table ${family} ${TABLE} {\n${body.join('\n')}\n}\n`;

/** Deletes both tables (declaring them first makes the delete succeed when they are absent). */
const reset = ['inet', 'bridge']
  .map((f) => `table ${f} ${TABLE}\ndelete table ${f} ${TABLE}\n`)
  .join('');

export function renderRuleset(nets: GuardedNetwork[], nics: GuestNic[]): string {
  if (nets.length === 0 && nics.length === 0) return reset;
  return reset + inetTable(nets) + bridgeTable(nets, nics);
}

function inetTable(nets: GuardedNetwork[]): string {
  const bridges = nets.map((n) => n.bridge);
  const egress = nets.filter((n) => n.egress);
  return table('inet', [
    set('guest_bridges', bridges),
    set(
      'egress_bridges',
      egress.map((n) => n.bridge),
    ),
    chain('input', 'input', [
      'iifname @guest_bridges ct state established,related accept',
      'iifname @guest_bridges drop',
    ]),
    chain('forward', 'forward', [
      ...bridges.map((b) => `iifname ${q(b)} oifname ${q(b)} accept`),
      'oifname @guest_bridges ct state established,related accept',
      // Never, even with egress: the nodes' VXLAN port (a guest would inject frames into other
      // Networks' segments) and link-local addresses (cloud metadata: the node's credentials).
      `iifname @guest_bridges udp dport ${VXLAN_PORT} drop`,
      'iifname @guest_bridges ip daddr 169.254.0.0/16 drop',
      'iifname @egress_bridges oifname != @guest_bridges accept',
      'iifname @guest_bridges drop',
      'oifname @guest_bridges drop',
    ]),
    chain(
      'postrouting',
      'postrouting',
      egress.map(
        (n) => `ip saddr ${n.cidr} ip daddr != ${n.cidr} oifname != @guest_bridges masquerade`,
      ),
      'nat',
      'srcnat',
    ),
  ]);
}

function bridgeTable(nets: GuardedNetwork[], nics: GuestNic[]): string {
  const overlays = nets.flatMap((n) => (n.overlay ? [{ ...n.overlay, gateway: n.gateway }] : []));
  const fromGateway = (dir: string) =>
    overlays.map((o) => `${dir} ${q(o.device)} ether saddr ${o.gatewayMac} drop`);
  const aboutGateway = (dir: string) =>
    overlays.map((o) => `${dir} ${q(o.device)} arp daddr ip ${o.gateway} drop`);
  // goto: a NIC's chain ending without a verdict ends at the policy (accept), not below.
  const dispatch = nics.map((n) => `${q(n.tap)} : goto ${nicChain(n)}`).join(', ');
  return table('bridge', [
    chain('prerouting', 'prerouting', [
      ...(nics.length ? [`iifname vmap { ${dispatch} }`] : []),
      // Taps are "kv" and hex digits; the overlay's VXLAN devices are "kvx…".
      `iifname "kv*" iifname != "kvx*" drop`,
    ]),
    ...nics.map(antiSpoofChain),
    chain('input', 'input', [...fromGateway('iifname'), ...aboutGateway('iifname')]),
    chain('forward', 'forward', [
      ...fromGateway('iifname'),
      ...aboutGateway('iifname'),
      ...aboutGateway('oifname'),
    ]),
    chain('output', 'output', fromGateway('oifname')),
  ]);
}

const nicChain = (n: GuestNic) => `nic_${n.tap}`;

function antiSpoofChain(n: GuestNic): string {
  const rules = [
    `ether saddr != ${n.mac} drop`,
    'ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept',
    `ip saddr != ${n.ip} drop`,
    `arp saddr ether != ${n.mac} drop`,
    `arp saddr ip != { ${n.ip}, 0.0.0.0 } drop`,
    'ether type != { ip, arp, 0x8035 } drop',
  ];
  return `  chain ${nicChain(n)} {\n${rules.map((r) => `    ${r}\n`).join('')}  }`;
}
