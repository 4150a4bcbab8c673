// Picks a host for one request: filter, weigh, then choose at random among the best
// `hostSubsetSize` hosts (as Nova) so that concurrent schedulers do not all pick one host.
import { affinityHosts, affinityReason, filters } from './filters.js';
import type { HostState, RequestSpec, WeigherMultipliers } from './types.js';
import { weigh } from './weighers.js';

export interface SchedulerOptions {
  multipliers: WeigherMultipliers;
  hostSubsetSize: number;
  random?: () => number;
}

export type Decision =
  { host: HostState } | { host?: undefined; rejected: Map<string, number>; message: string };

export function selectHost(hosts: HostState[], req: RequestSpec, opts: SchedulerOptions): Decision {
  const rejected = new Map<string, number>();
  const reject = (reason: string) => rejected.set(reason, (rejected.get(reason) ?? 0) + 1);
  let candidates: HostState[] = [];
  for (const host of hosts) {
    const failed = filters.find((f) => !f.passes(host, req));
    if (failed) reject(failed.reason);
    else candidates.push(host);
  }
  const allowed = affinityHosts(hosts, req);
  if (allowed) {
    const before = candidates.length;
    candidates = candidates.filter((h) => allowed.has(h.name));
    for (let i = candidates.length; i < before; i++) reject(affinityReason);
  }
  if (candidates.length === 0)
    return { rejected, message: noValidHostMessage(hosts.length, rejected) };

  const weights = weigh(candidates, req, opts.multipliers);
  const ranked = candidates
    .map((host, i) => ({ host, weight: weights[i] as number }))
    .sort((a, b) => b.weight - a.weight);
  const subset = ranked.slice(0, Math.max(1, opts.hostSubsetSize));
  const pick = subset[Math.floor((opts.random ?? Math.random)() * subset.length)] ?? subset[0];
  return { host: (pick as { host: HostState }).host };
}

/** "0/40 hypervisors: 25 insufficient memory, 15 server group anti-affinity" */
export function noValidHostMessage(total: number, rejected: Map<string, number>): string {
  if (total === 0) return '0/0 hypervisors: no Hypervisor is registered; start a node agent';
  const parts = [...rejected.entries()]
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([r, n]) => `${n} ${r}`);
  return `0/${total} hypervisors: ${parts.join(', ')}`;
}
