// The operator's Prometheus metrics. Gauges that describe the cluster are computed at scrape
// time from the informers, so they can never drift from what the operator sees.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { ClusterState } from './cluster-state.js';
import { limits } from './scheduler/types.js';

export interface OperatorMetrics {
  schedulingSeconds: Histogram<'result'>;
  schedulingFailures: Counter<'reason'>;
  createToActiveSeconds: Histogram;
  phaseSeconds: Histogram<'phase'>;
  apiWriteSeconds: Histogram<'op'>;
}

export function operatorMetrics(registry: Registry, state: ClusterState): OperatorMetrics {
  const registers = [registry];
  new Gauge({
    name: 'kova_instances',
    help: 'Instances by phase.',
    labelNames: ['phase'],
    registers,
    collect() {
      this.reset();
      for (const i of state.instances.list()) this.inc({ phase: i.status?.phase ?? 'Pending' });
    },
  });
  const resources = ['vcpus', 'memory_mib', 'disk_gib'] as const;
  const hostGauge = (
    name: string,
    help: string,
    pick: (h: ReturnType<ClusterState['hostStates']>[number]) => number[],
  ) =>
    new Gauge({
      name,
      help,
      labelNames: ['hypervisor', 'resource'],
      registers,
      collect() {
        this.reset();
        for (const h of state.hostStates())
          pick(h).forEach((v, i) =>
            this.set({ hypervisor: h.name, resource: resources[i] as string }, v),
          );
      },
    });
  hostGauge(
    'kova_hypervisor_allocated',
    'Resources claimed by Instances on each hypervisor.',
    (h) => [h.used.vcpus, h.used.memoryMiB, h.used.diskGiB],
  );
  hostGauge(
    'kova_hypervisor_capacity',
    'Resources each hypervisor offers: capacity × allocation ratio − reserved.',
    (h) => {
      const l = limits(h);
      return [l.vcpus, l.memoryMiB, l.diskGiB];
    },
  );
  return {
    schedulingSeconds: new Histogram({
      name: 'kova_scheduling_duration_seconds',
      help: 'Compute time of one scheduling decision (filters and weighers).',
      labelNames: ['result'],
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05],
      registers,
    }),
    schedulingFailures: new Counter({
      name: 'kova_scheduling_failures_total',
      help: 'Instances that could not be placed, by reason.',
      labelNames: ['reason'],
      registers,
    }),
    createToActiveSeconds: new Histogram({
      name: 'kova_instance_create_to_active_seconds',
      help: "Time from an Instance's creation to phase Active.",
      buckets: [0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300],
      registers,
    }),
    phaseSeconds: new Histogram({
      name: 'kova_instance_phase_duration_seconds',
      help: 'Time an Instance spent in each boot phase, from its condition transition times.',
      labelNames: ['phase'],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
      registers,
    }),
    apiWriteSeconds: new Histogram({
      name: 'kova_operator_api_write_duration_seconds',
      help: "Latency of the operator's writes to the API server.",
      labelNames: ['op'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    }),
  };
}
