import { describe, expect, it } from '@jest/globals';
import { allocationRanges, ipToNumber, macFor, numberToIp, parseCidr, rangeSize } from './ipv4.js';

const net = (spec: Partial<Parameters<typeof allocationRanges>[0]> = {}) =>
  ({ cidr: '10.0.0.0/24', gateway: '10.0.0.1', bridge: 'br0', ...spec }) as Parameters<
    typeof allocationRanges
  >[0];

describe('IPv4 pools', () => {
  it('converts addresses both ways, high bit included', () => {
    for (const ip of ['0.0.0.0', '10.77.0.12', '192.168.255.254', '255.255.255.255'])
      expect(numberToIp(ipToNumber(ip))).toBe(ip);
    expect(() => ipToNumber('10.0.0.256')).toThrow('not an IPv4 address');
  });

  it('finds the network and broadcast of a CIDR', () => {
    const s = parseCidr('192.168.4.0/22');
    expect([numberToIp(s.network), numberToIp(s.broadcast), s.prefix]).toEqual([
      '192.168.4.0',
      '192.168.7.255',
      22,
    ]);
  });

  it('offers every host address but the gateway when no pool is given', () => {
    const ranges = allocationRanges(net());
    expect(rangeSize(ranges)).toBe(253);
    expect(ranges.map((r) => [numberToIp(r.start), numberToIp(r.end)])).toEqual([
      ['10.0.0.2', '10.0.0.254'],
    ]);
  });

  it('uses the pools as given', () => {
    const ranges = allocationRanges(
      net({
        allocationPools: [
          { start: '10.0.0.10', end: '10.0.0.19' },
          { start: '10.0.0.100', end: '10.0.0.104' },
        ],
      }),
    );
    expect(rangeSize(ranges)).toBe(15);
  });

  it('derives Neutron-prefixed MACs that differ for every address of a network', () => {
    expect(macFor('10.77.0.12')).toBe('fa:16:3e:4d:00:0c');
    const macs = new Set(
      Array.from({ length: 4096 }, (_, i) => macFor(numberToIp(ipToNumber('10.1.0.0') + i))),
    );
    expect(macs.size).toBe(4096);
  });
});
