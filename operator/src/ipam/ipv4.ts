// IPv4 arithmetic for address pools. Addresses are handled as unsigned 32-bit numbers.
import type { INetwork } from '@kova/crds';

export function ipToNumber(ip: string): number {
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new Error(`${ip} is not an IPv4 address`);
  }
  return ((parts[0]! << 24) >>> 0) + (parts[1]! << 16) + (parts[2]! << 8) + parts[3]!;
}

export function numberToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export interface Subnet {
  network: number;
  broadcast: number;
  prefix: number;
}

export function parseCidr(cidr: string): Subnet {
  const [addr, len] = cidr.split('/');
  const prefix = Number(len);
  const mask = prefix === 0 ? 0 : (~0 << (32 - prefix)) >>> 0;
  const network = (ipToNumber(addr ?? '') & mask) >>> 0;
  return { network, broadcast: (network | (~mask >>> 0)) >>> 0, prefix };
}

export const contains = (s: Subnet, ip: number) => ip >= s.network && ip <= s.broadcast;

export interface Range {
  start: number;
  end: number;
}

/**
 * The ranges addresses are handed out from: the Network's pools, or every host address of its
 * subnet, always without the gateway.
 */
export function allocationRanges(spec: INetwork['spec']): Range[] {
  const subnet = parseCidr(spec.cidr);
  const pools = spec.allocationPools?.length
    ? spec.allocationPools.map((p) => ({ start: ipToNumber(p.start), end: ipToNumber(p.end) }))
    : [{ start: subnet.network + 1, end: subnet.broadcast - 1 }];
  const gateway = ipToNumber(spec.gateway);
  return pools.flatMap((r) => {
    if (gateway < r.start || gateway > r.end) return [r];
    return [
      { start: r.start, end: gateway - 1 },
      { start: gateway + 1, end: r.end },
    ].filter((x) => x.start <= x.end);
  });
}

export const rangeSize = (ranges: Range[]) => ranges.reduce((n, r) => n + r.end - r.start + 1, 0);

/**
 * Neutron's MAC prefix fa:16:3e followed by the low 24 bits of the address: unique within a
 * Network (an address has one holder), and derived rather than stored, so it needs no second
 * arbitration of its own.
 */
export function macFor(ip: string): string {
  const n = ipToNumber(ip);
  const hex = (b: number) => b.toString(16).padStart(2, '0');
  return ['fa', '16', '3e', hex((n >>> 16) & 255), hex((n >>> 8) & 255), hex(n & 255)].join(':');
}
