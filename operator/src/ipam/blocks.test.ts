// The blocks' geometry and the edit of a block's list, as the block writer applies it.
import { describe, expect, it } from '@jest/globals';
import type { INetwork } from '@kova/crds';
import { applyEdits, blockOf, type AddressLease } from './blocks.js';
import { ipToNumber } from './ipv4.js';

const net = (cidr: string) =>
  ({ metadata: { name: 'red' }, spec: { cidr, gateway: '10.0.0.1', bridge: 'br' } }) as INetwork;
const lease = (ip: string, uid: string): AddressLease => ({
  network: 'red',
  ip,
  mac: 'fa:16:3e:00:00:01',
  instance: { namespace: 'ns', name: uid, uid },
});

describe('blockOf', () => {
  it('cuts a Network into blocks of 64 addresses, named after their first', () => {
    expect(blockOf(net('10.0.0.0/16'), ipToNumber('10.0.1.70'))).toEqual({
      name: 'red.10-0-1-64',
      network: 'red',
      cidr: '10.0.1.64/26',
    });
  });

  it('gives a Network smaller than a block one block: the Network itself', () => {
    expect(blockOf(net('10.0.0.8/29'), ipToNumber('10.0.0.13'))).toEqual({
      name: 'red.10-0-0-8',
      network: 'red',
      cidr: '10.0.0.8/29',
    });
  });
});

describe('applyEdits', () => {
  const held = [{ ip: '10.0.0.5', mac: 'm', instance: lease('10.0.0.5', 'a').instance }];

  it('adds a free address, refuses one another Instance holds, and takes a repeat as done', () => {
    const out = applyEdits(held, [
      { kind: 'add', lease: lease('10.0.0.9', 'b') },
      { kind: 'add', lease: lease('10.0.0.5', 'c') },
      { kind: 'add', lease: lease('10.0.0.5', 'a') },
    ]);
    expect(out.results).toEqual([true, false, true]);
    expect(out.entries.map((e) => `${e.ip} ${e.instance.uid}`)).toEqual([
      '10.0.0.5 a',
      '10.0.0.9 b',
    ]);
    expect(out.changed).toBe(true);
  });

  it("removes and holds only the named Instance's entry", () => {
    const out = applyEdits(held, [
      { kind: 'remove', ip: '10.0.0.5', uid: 'someone-else' },
      { kind: 'hold', ip: '10.0.0.5', uid: 'a', node: 'hv-1' },
    ]);
    expect(out.entries).toEqual([{ ...held[0], heldForNode: 'hv-1' }]);
    const gone = applyEdits(out.entries, [{ kind: 'remove', ip: '10.0.0.5', uid: 'a' }]);
    expect(gone).toEqual({ entries: [], results: [true], changed: true });
  });

  it('reports no change when nothing changed, so nothing is written', () => {
    const out = applyEdits(held, [
      { kind: 'add', lease: lease('10.0.0.5', 'a') },
      { kind: 'remove', ip: '10.0.0.7', uid: 'a' },
    ]);
    expect(out.changed).toBe(false);
  });

  it('keeps the entries in address order, numerically', () => {
    const out = applyEdits(
      [],
      ['10.0.0.10', '10.0.0.9', '10.0.0.100'].map((ip) => ({
        kind: 'add' as const,
        lease: lease(ip, ip),
      })),
    );
    expect(out.entries.map((e) => e.ip)).toEqual(['10.0.0.9', '10.0.0.10', '10.0.0.100']);
  });
});
