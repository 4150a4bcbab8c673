// The rendered ruleset, read as a reviewer would, and checked by the real nft against the real
// kernel (nft -c, in a network namespace of the test's own, so the host's rules are untouched).
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { renderRuleset, type GuardedNetwork, type GuestNic } from './ruleset.js';

const NS = `kova-ruleset-${process.pid}`;
const nets: GuardedNetwork[] = [
  { name: 'red', bridge: 'br-red', cidr: '10.1.0.0/24', gateway: '10.1.0.1', egress: true },
  {
    name: 'blue',
    bridge: 'br-blue',
    cidr: '10.2.0.0/24',
    gateway: '10.2.0.1',
    egress: false,
    overlay: { device: 'kvx1001', gatewayMac: '02:6b:76:00:03:e9' },
  },
];
const nics: GuestNic[] = [
  { tap: 'kv0123456789ab0', mac: 'fa:16:3e:00:00:05', ip: '10.1.0.5' },
  { tap: 'kv0123456789ab1', mac: 'fa:16:3e:00:01:05', ip: '10.2.0.5' },
];
const nft = (text: string, ...args: string[]) =>
  execFileSync('ip', ['netns', 'exec', NS, 'nft', ...args, '-f', '-'], {
    input: text,
    encoding: 'utf8',
  });

beforeAll(() => void execFileSync('ip', ['netns', 'add', NS]));
afterAll(() => void execFileSync('ip', ['netns', 'del', NS]));

describe('kova nftables ruleset', () => {
  it('is accepted by nft, applied twice in a row and emptied to nothing', () => {
    const text = renderRuleset(nets, nics);
    nft(text);
    nft(text);
    const listed = execFileSync('ip', ['netns', 'exec', NS, 'nft', 'list', 'ruleset'], {
      encoding: 'utf8',
    });
    expect(listed).toContain('table inet kova');
    expect(listed).toContain('table bridge kova');
    nft(renderRuleset([], []));
    expect(
      execFileSync('ip', ['netns', 'exec', NS, 'nft', 'list', 'ruleset'], { encoding: 'utf8' }),
    ).toBe('');
  });

  it('masquerades only the Network with egress, and only towards what is not a guest Network', () => {
    const text = renderRuleset(nets, nics);
    expect(text).toContain(
      'ip saddr 10.1.0.0/24 ip daddr != 10.1.0.0/24 oifname != @guest_bridges masquerade',
    );
    expect(text).not.toContain('ip saddr 10.2.0.0/24');
    expect(text).toContain('iifname @egress_bridges oifname != @guest_bridges accept');
    // Before the egress accept: no VXLAN injection into other segments, no cloud metadata.
    const accept = text.indexOf('iifname @egress_bridges oifname != @guest_bridges accept');
    expect(text.indexOf('iifname @guest_bridges udp dport 4789 drop')).toBeLessThan(accept);
    expect(text.indexOf('iifname @guest_bridges ip daddr 169.254.0.0/16 drop')).toBeLessThan(
      accept,
    );
  });

  it('holds every guest NIC to its own MAC and address, with no traffic but IPv4, ARP and RARP', () => {
    const text = renderRuleset(nets, nics);
    expect(text).toContain(
      'iifname vmap { "kv0123456789ab0" : goto nic_kv0123456789ab0, "kv0123456789ab1" : goto nic_kv0123456789ab1 }',
    );
    // A kova tap of no Instance here sends nothing; the overlay's devices are not taps.
    expect(text).toContain('iifname "kv*" iifname != "kvx*" drop');
    const chain = text.slice(text.indexOf('chain nic_kv0123456789ab0 {'));
    const rules = chain
      .slice(0, chain.indexOf('}\n'))
      .split('\n')
      .slice(1)
      .map((l) => l.trim())
      .filter(Boolean);
    expect(rules).toEqual([
      'ether saddr != fa:16:3e:00:00:05 drop',
      'ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept',
      'ip saddr != 10.1.0.5 drop',
      'arp saddr ether != fa:16:3e:00:00:05 drop',
      'arp saddr ip != { 10.1.0.5, 0.0.0.0 } drop',
      'ether type != { ip, arp, 0x8035 } drop',
    ]);
  });

  it('guards guest NICs on a node whose Networks are all unmanaged', () => {
    nft(renderRuleset([], nics));
    const listed = execFileSync(
      'ip',
      ['netns', 'exec', NS, 'nft', 'list', 'table', 'bridge', 'kova'],
      {
        encoding: 'utf8',
      },
    );
    expect(listed).toContain('chain nic_kv0123456789ab1');
    nft(renderRuleset([], []));
  });

  it('keeps the distributed gateway off the overlay: its frames and ARP about it stay on the node', () => {
    const text = renderRuleset(nets, nics);
    expect(text).toContain('oifname "kvx1001" ether saddr 02:6b:76:00:03:e9 drop');
    expect(text).toContain('oifname "kvx1001" arp daddr ip 10.2.0.1 drop');
    expect(text).toContain('iifname "kvx1001" arp daddr ip 10.2.0.1 drop');
    expect(text).not.toContain('10.1.0.1 drop');
  });
});
