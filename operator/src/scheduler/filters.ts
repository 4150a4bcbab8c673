// Nova's scheduler filters, each a yes/no on one host for one request. A host is counted
// against the first filter that rejects it, so the NoValidHost message adds up to the total.
import { free, type HostState, type RequestSpec } from './types.js';

export interface Filter {
  /** How a rejected host is counted in the NoValidHost message, e.g. "insufficient memory". */
  reason: string;
  passes(host: HostState, req: RequestSpec): boolean;
}

const groupCount = (host: HostState, req: RequestSpec) =>
  req.group ? (host.groupMembers.get(req.group.key) ?? 0) : 0;

export const filters: Filter[] = [
  { reason: 'hypervisor down', passes: (h) => h.down === undefined },
  { reason: 'disabled', passes: (h) => !h.disabled },
  { reason: 'already tried', passes: (h, r) => !r.triedNodes.has(h.name) },
  { reason: 'other availability zone', passes: (h, r) => !r.zone || h.zone === r.zone },
  {
    reason: 'node selector mismatch',
    passes: (h, r) => Object.entries(r.nodeSelector ?? {}).every(([k, v]) => h.labels[k] === v),
  },
  { reason: 'architecture mismatch', passes: (h, r) => !h.arch || h.arch === r.arch },
  { reason: 'insufficient vCPU', passes: (h, r) => free(h).vcpus >= r.resources.vcpus },
  { reason: 'insufficient memory', passes: (h, r) => free(h).memoryMiB >= r.resources.memoryMiB },
  { reason: 'insufficient disk', passes: (h, r) => free(h).diskGiB >= r.resources.diskGiB },
  {
    reason: 'server group anti-affinity',
    passes: (h, r) => r.group?.policy !== 'anti-affinity' || groupCount(h, r) < r.group.maxPerNode,
  },
];

/**
 * Hard affinity needs the whole candidate set: once any member is placed, only hosts holding
 * members pass. It runs after the per-host filters.
 */
export const affinityReason = 'server group affinity';

export function affinityHosts(hosts: HostState[], req: RequestSpec): Set<string> | undefined {
  if (req.group?.policy !== 'affinity') return undefined;
  const key = req.group.key;
  const withMembers = hosts.filter((h) => (h.groupMembers.get(key) ?? 0) > 0);
  return withMembers.length ? new Set(withMembers.map((h) => h.name)) : undefined;
}
