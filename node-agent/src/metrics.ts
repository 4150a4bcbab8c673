// The node agent's Prometheus metrics.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { CacheStats } from './steps/image-cache.js';

export interface AgentMetrics {
  stepSeconds: Histogram<'step' | 'result'>;
  libvirtSeconds: Histogram<'op' | 'result'>;
  domains: Gauge<'state'>;
  restarts: Counter<'reason'>;
}

export function agentMetrics(registry: Registry, cache: CacheStats): AgentMetrics {
  const registers = [registry];
  new Counter({
    name: 'kova_image_cache_hits_total',
    help: 'Image requests served from the node cache.',
    registers,
    collect() {
      this.reset();
      this.inc(cache.hits);
    },
  });
  new Counter({
    name: 'kova_image_cache_misses_total',
    help: 'Image requests that had to fetch the image.',
    registers,
    collect() {
      this.reset();
      this.inc(cache.misses);
    },
  });
  new Counter({
    name: 'kova_image_cache_fetched_bytes_total',
    help: 'Bytes of images fetched into the node cache.',
    registers,
    collect() {
      this.reset();
      this.inc(cache.bytesFetched);
    },
  });
  return {
    stepSeconds: new Histogram({
      name: 'kova_agent_step_duration_seconds',
      help: 'Duration of each node step of a build or respawn (networking, image, block_devices, config_drive, define, start, wait_running).',
      labelNames: ['step', 'result'],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300],
      registers,
    }),
    libvirtSeconds: new Histogram({
      name: 'kova_libvirt_call_duration_seconds',
      help: 'Latency of libvirt calls by operation.',
      labelNames: ['op', 'result'],
      buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers,
    }),
    domains: new Gauge({
      name: 'kova_domains',
      help: 'kova domains on this node by power state.',
      labelNames: ['state'],
      registers,
    }),
    restarts: new Counter({
      name: 'kova_domain_restarts_total',
      help: 'Domains restarted by runStrategy, by why they stopped.',
      labelNames: ['reason'],
      registers,
    }),
  };
}
