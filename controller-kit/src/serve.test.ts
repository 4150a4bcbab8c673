import { afterEach, describe, expect, it } from '@jest/globals';
import { Counter, Registry } from 'prom-client';
import { HealthServer } from './serve.js';

describe('HealthServer', () => {
  let server: HealthServer | undefined;
  afterEach(() => server?.stop());

  it('serves Prometheus metrics, liveness and readiness with the failing check named', async () => {
    const registry = new Registry();
    new Counter({ name: 'kova_test_things_total', help: 'Things.', registers: [registry] }).inc(3);
    server = new HealthServer({ port: 0, host: '127.0.0.1', registry });
    let synced = false;
    server.addLivenessCheck('event-loop', () => true);
    server.addReadinessCheck('informers-synced', () => synced || 'instances not listed yet');
    const port = await server.start();
    const get = (path: string) => fetch(`http://127.0.0.1:${port}${path}`);

    const metrics = await get('/metrics');
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain('kova_test_things_total 3');

    expect((await get('/healthz')).status).toBe(200);
    const notReady = await get('/readyz');
    expect(notReady.status).toBe(503);
    expect(await notReady.text()).toContain(
      '[-] informers-synced failed: instances not listed yet',
    );

    synced = true;
    expect((await get('/readyz')).status).toBe(200);
    expect((await get('/nope')).status).toBe(404);
  });

  it('reports a check that throws as failed rather than crashing', async () => {
    server = new HealthServer({ port: 0, host: '127.0.0.1', registry: new Registry() });
    server.addLivenessCheck('libvirt', () => {
      throw new Error('connection lost');
    });
    const port = await server.start();
    const res = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(res.status).toBe(503);
    expect(await res.text()).toContain('libvirt failed: connection lost');
  });
});
