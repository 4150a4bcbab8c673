// The Network controller's Prometheus metrics. The gauges are computed at scrape time from the
// informers and the usage index, so they never drift from what the operator sees.
import { ConditionType, type INetwork } from '@kova/crds';
import { Counter, Gauge, type Registry } from 'prom-client';
import { addressCounts } from './rules.js';
import type { NetworkUsage } from './usage.js';

export interface NetworkMetrics {
  statusWrites: Counter;
  vnisAssigned: Counter;
}

export function networkMetrics(
  registry: Registry,
  networks: { list(): readonly INetwork[] },
  usage: NetworkUsage,
): NetworkMetrics {
  const registers = [registry];
  new Gauge({
    name: 'kova_networks',
    help: "Networks by the reason of their Ready condition (Ready, CIDROverlap, InUse, …; Unchecked before the operator's first look).",
    labelNames: ['reason'],
    registers,
    collect() {
      this.reset();
      for (const n of networks.list()) {
        const ready = n.status?.conditions?.find((c) => c.type === ConditionType.Ready);
        this.inc({ reason: ready?.reason ?? 'Unchecked' });
      }
    },
  });
  new Gauge({
    name: 'kova_network_addresses',
    help: 'Addresses of each Network: allocated, and still available in its allocation pools.',
    labelNames: ['network', 'state'],
    registers,
    collect() {
      this.reset();
      for (const n of networks.list()) {
        const network = n.metadata?.name as string;
        const counts = addressCounts(n, usage.allocationsOf(network));
        this.set({ network, state: 'allocated' }, counts.allocated);
        this.set({ network, state: 'available' }, counts.available);
      }
    },
  });
  return {
    statusWrites: new Counter({
      name: 'kova_network_status_writes_total',
      help: 'Status writes to Networks (coalesced: a burst of bindings is one write per Network).',
      registers,
    }),
    vnisAssigned: new Counter({
      name: 'kova_network_vnis_assigned_total',
      help: 'VXLAN network identifiers given to managed Networks.',
      registers,
    }),
  };
}
