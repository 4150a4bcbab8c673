import { describe, expect, it } from '@jest/globals';
import { filters } from './filters.js';
import { selectHost } from './scheduler.js';
import { noResources, type HostState, type RequestSpec, type WeigherMultipliers } from './types.js';
import { weigh } from './weighers.js';

const spread: WeigherMultipliers = {
  ram: 1,
  cpu: 1,
  disk: 1,
  buildFailure: 10,
  softAffinity: 1,
  softAntiAffinity: 1,
};
const opts = { multipliers: spread, hostSubsetSize: 1 };

const host = (name: string, over: Partial<HostState> = {}): HostState => ({
  name,
  disabled: false,
  labels: {},
  arch: 'x86_64',
  capacity: { vcpus: 8, memoryMiB: 16384, diskGiB: 100 },
  reserved: { vcpus: 0, memoryMiB: 512, diskGiB: 0 },
  ratios: { cpu: 4, ram: 1, disk: 1 },
  used: noResources(),
  recentFailures: 0,
  groupMembers: new Map(),
  ...over,
});

const req = (over: Partial<RequestSpec> = {}): RequestSpec => ({
  resources: { vcpus: 1, memoryMiB: 1024, diskGiB: 10 },
  arch: 'x86_64',
  triedNodes: new Set(),
  ...over,
});

const rejectedBy = (h: HostState, r: RequestSpec) => filters.find((f) => !f.passes(h, r))?.reason;

describe('filters', () => {
  it.each([
    [
      'a hypervisor whose heartbeat is stale',
      host('a', { down: 'heartbeat stale' }),
      req(),
      'hypervisor down',
    ],
    ['a disabled hypervisor', host('a', { disabled: true }), req(), 'disabled'],
    ['a node already tried', host('a'), req({ triedNodes: new Set(['a']) }), 'already tried'],
    ['another zone', host('a', { zone: 'az1' }), req({ zone: 'az2' }), 'other availability zone'],
    [
      'a node without the selected label',
      host('a', { labels: { gpu: 'no' } }),
      req({ nodeSelector: { gpu: 'yes' } }),
      'node selector mismatch',
    ],
    ['another architecture', host('a', { arch: 'aarch64' }), req(), 'architecture mismatch'],
    [
      'vCPUs beyond capacity × ratio',
      host('a', { used: { vcpus: 32, memoryMiB: 0, diskGiB: 0 } }),
      req(),
      'insufficient vCPU',
    ],
    [
      'memory beyond capacity − reserved',
      host('a', { used: { vcpus: 0, memoryMiB: 15000, diskGiB: 0 } }),
      req(),
      'insufficient memory',
    ],
    [
      'disk beyond capacity',
      host('a', { used: { vcpus: 0, memoryMiB: 0, diskGiB: 95 } }),
      req(),
      'insufficient disk',
    ],
    [
      'a host at maxPerNode of an anti-affinity group',
      host('a', { groupMembers: new Map([['ns/g', 2]]) }),
      req({ group: { key: 'ns/g', policy: 'anti-affinity', maxPerNode: 2 } }),
      'server group anti-affinity',
    ],
  ])('reject %s', (_what, h, r, reason) => {
    expect(rejectedBy(h, r)).toBe(reason);
  });

  it('honour the allocation ratio: 8 CPUs × 4.0 take 32 vCPUs, not 33', () => {
    const r = req({ resources: { vcpus: 1, memoryMiB: 1, diskGiB: 1 } });
    expect(
      rejectedBy(host('a', { used: { vcpus: 31, memoryMiB: 0, diskGiB: 0 } }), r),
    ).toBeUndefined();
    expect(rejectedBy(host('a', { used: { vcpus: 32, memoryMiB: 0, diskGiB: 0 } }), r)).toBe(
      'insufficient vCPU',
    );
  });

  it('pass a host with room under every rule', () => {
    expect(
      rejectedBy(
        host('a', { zone: 'az1', labels: { gpu: 'yes' } }),
        req({ zone: 'az1', nodeSelector: { gpu: 'yes' } }),
      ),
    ).toBeUndefined();
  });
});

describe('selectHost', () => {
  it('spreads by default: picks the host with the most free resources', () => {
    const busy = host('busy', { used: { vcpus: 6, memoryMiB: 12000, diskGiB: 80 } });
    const idle = host('idle');
    expect(selectHost([busy, idle], req(), opts).host?.name).toBe('idle');
  });

  it('packs with negative resource multipliers', () => {
    const busy = host('busy', { used: { vcpus: 6, memoryMiB: 12000, diskGiB: 80 } });
    const idle = host('idle');
    const pack = { ...spread, ram: -1, cpu: -1, disk: -1 };
    expect(selectHost([busy, idle], req(), { ...opts, multipliers: pack }).host?.name).toBe('busy');
  });

  it('avoids hosts with recent build failures', () => {
    const failing = host('failing', { recentFailures: 3 });
    const fine = host('fine', { used: { vcpus: 2, memoryMiB: 2048, diskGiB: 20 } });
    expect(selectHost([failing, fine], req(), opts).host?.name).toBe('fine');
  });

  it('keeps hard-affinity members together, and places the first member anywhere', () => {
    const group = { key: 'ns/g', policy: 'affinity' as const, maxPerNode: 1 };
    const a = host('a');
    const b = host('b', {
      groupMembers: new Map([['ns/g', 1]]),
      used: { vcpus: 4, memoryMiB: 8000, diskGiB: 40 },
    });
    expect(selectHost([a, b], req({ group }), opts).host?.name).toBe('b');
    expect(selectHost([a, host('c')], req({ group }), opts).host).toBeDefined();
  });

  it('prefers, but does not require, separation for soft-anti-affinity', () => {
    const group = { key: 'ns/g', policy: 'soft-anti-affinity' as const, maxPerNode: 1 };
    const withMember = host('with', { groupMembers: new Map([['ns/g', 1]]) });
    const empty = host('empty', { used: { vcpus: 4, memoryMiB: 8000, diskGiB: 40 } });
    expect(
      selectHost([withMember, empty], req({ group }), {
        ...opts,
        multipliers: { ...spread, softAntiAffinity: 10 },
      }).host?.name,
    ).toBe('empty');
    expect(selectHost([withMember], req({ group }), opts).host?.name).toBe('with');
  });

  it('chooses among the top hostSubsetSize hosts at random', () => {
    const hosts = ['a', 'b', 'c'].map((n, i) =>
      host(n, { used: { vcpus: i, memoryMiB: i * 1000, diskGiB: i } }),
    );
    const picks = new Set(
      [0, 0.5, 0.99].map(
        (x) => selectHost(hosts, req(), { ...opts, hostSubsetSize: 2, random: () => x }).host?.name,
      ),
    );
    expect(picks).toEqual(new Set(['a', 'b']));
  });

  it('explains NoValidHost by counting the hypervisors each filter removed', () => {
    const hosts = [
      ...Array.from({ length: 25 }, (_, i) =>
        host(`m${i}`, { used: { vcpus: 0, memoryMiB: 16000, diskGiB: 0 } }),
      ),
      ...Array.from({ length: 15 }, (_, i) =>
        host(`g${i}`, { groupMembers: new Map([['ns/g', 1]]) }),
      ),
    ];
    const d = selectHost(
      hosts,
      req({ group: { key: 'ns/g', policy: 'anti-affinity', maxPerNode: 1 } }),
      opts,
    );
    expect(d.host).toBeUndefined();
    expect(d.host === undefined && d.message).toBe(
      '0/40 hypervisors: 25 insufficient memory, 15 server group anti-affinity',
    );
  });

  it('says so when no hypervisor exists at all', () => {
    const d = selectHost([], req(), opts);
    expect(d.host === undefined && d.message).toContain('no Hypervisor is registered');
  });
});

describe('weigh', () => {
  it('normalises each weigher to 0..1 before multiplying', () => {
    const small = host('small', { capacity: { vcpus: 2, memoryMiB: 2560, diskGiB: 10 } });
    const big = host('big', { capacity: { vcpus: 64, memoryMiB: 262656, diskGiB: 1000 } });
    expect(weigh([small, big], req(), { ...spread, buildFailure: 0 })).toEqual([0, 3]);
  });
});
