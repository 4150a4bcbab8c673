// Prometheus metrics of the controller kit itself. Each registry gets one set, shared by every
// queue and informer registered on it (they differ by the `name` label).
import { Counter, Gauge, Histogram, register as defaultRegistry, type Registry } from 'prom-client';

export interface KitMetrics {
  queueDepth: Gauge<'name'>;
  queueAdds: Counter<'name'>;
  queueRetries: Counter<'name'>;
  queueWorkSeconds: Histogram<'name'>;
  queueWaitSeconds: Histogram<'name'>;
  informerRestarts: Counter<'resource'>;
  informerEvents: Counter<'resource' | 'type'>;
  isLeader: Gauge<'lease'>;
  leaderTransitions: Counter<'lease'>;
}

const byRegistry = new WeakMap<Registry, KitMetrics>();

export function kitMetrics(registry: Registry = defaultRegistry): KitMetrics {
  const existing = byRegistry.get(registry);
  if (existing) return existing;
  const registers = [registry];
  const buckets = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
  const metrics: KitMetrics = {
    queueDepth: new Gauge({
      name: 'kova_workqueue_depth',
      help: 'Keys waiting in the work queue.',
      labelNames: ['name'],
      registers,
    }),
    queueAdds: new Counter({
      name: 'kova_workqueue_adds_total',
      help: 'Keys added to the work queue.',
      labelNames: ['name'],
      registers,
    }),
    queueRetries: new Counter({
      name: 'kova_workqueue_retries_total',
      help: 'Keys requeued with backoff after a failed sync.',
      labelNames: ['name'],
      registers,
    }),
    queueWorkSeconds: new Histogram({
      name: 'kova_workqueue_work_duration_seconds',
      help: 'Time a worker spent on one key.',
      labelNames: ['name'],
      buckets,
      registers,
    }),
    queueWaitSeconds: new Histogram({
      name: 'kova_workqueue_queue_duration_seconds',
      help: 'Time a key waited in the queue before a worker took it.',
      labelNames: ['name'],
      buckets,
      registers,
    }),
    informerRestarts: new Counter({
      name: 'kova_informer_restarts_total',
      help: 'Informer list/watch restarts after an error.',
      labelNames: ['resource'],
      registers,
    }),
    informerEvents: new Counter({
      name: 'kova_informer_events_total',
      help: 'Watch events an informer delivered.',
      labelNames: ['resource', 'type'],
      registers,
    }),
    isLeader: new Gauge({
      name: 'kova_leader_is_leader',
      help: '1 while this process holds the leader Lease.',
      labelNames: ['lease'],
      registers,
    }),
    leaderTransitions: new Counter({
      name: 'kova_leader_transitions_total',
      help: 'Times this process gained or lost leadership.',
      labelNames: ['lease'],
      registers,
    }),
  };
  byRegistry.set(registry, metrics);
  return metrics;
}
