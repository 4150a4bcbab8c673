// Nova's weighers: each scores every candidate, scores are normalised to 0..1 across the
// candidates, multiplied, and summed. Positive resource multipliers spread; negative pack.
import { free, type HostState, type RequestSpec, type WeigherMultipliers } from './types.js';

interface Weigher {
  multiplier: keyof WeigherMultipliers;
  raw(host: HostState, req: RequestSpec): number;
  appliesTo?(req: RequestSpec): boolean;
}

const members = (h: HostState, r: RequestSpec) =>
  r.group ? (h.groupMembers.get(r.group.key) ?? 0) : 0;

const weighers: Weigher[] = [
  { multiplier: 'ram', raw: (h) => free(h).memoryMiB },
  { multiplier: 'cpu', raw: (h) => free(h).vcpus },
  { multiplier: 'disk', raw: (h) => free(h).diskGiB },
  { multiplier: 'buildFailure', raw: (h) => -h.recentFailures },
  {
    multiplier: 'softAffinity',
    raw: members,
    appliesTo: (r) => r.group?.policy === 'soft-affinity',
  },
  {
    multiplier: 'softAntiAffinity',
    raw: (h, r) => -members(h, r),
    appliesTo: (r) => r.group?.policy === 'soft-anti-affinity',
  },
];

/** Total weight of each host, in the order given. */
export function weigh(
  hosts: HostState[],
  req: RequestSpec,
  multipliers: WeigherMultipliers,
): number[] {
  const totals = new Array<number>(hosts.length).fill(0);
  for (const w of weighers) {
    const m = multipliers[w.multiplier];
    if (m === 0 || (w.appliesTo && !w.appliesTo(req))) continue;
    const raw = hosts.map((h) => w.raw(h, req));
    let min = Infinity;
    let max = -Infinity;
    for (const v of raw) {
      if (v < min) min = v;
      if (v > max) max = v;
    }
    if (max === min) continue;
    for (let i = 0; i < raw.length; i++)
      totals[i]! += (m * ((raw[i] as number) - min)) / (max - min);
  }
  return totals;
}
