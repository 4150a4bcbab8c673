// The agent's health endpoints' checks, with libvirt's test driver and an API server that does
// not answer (nothing listens on the address).
import { afterAll, describe, expect, it } from '@jest/globals';
import { KubeConfig } from '@kubernetes/client-node';
import { until } from '@kova/hack';
import { Registry } from 'prom-client';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NodeAgent } from './agent.js';
import { configFromEnv } from './config.js';
import { quietLogger } from './test-support.js';

const stateDir = mkdtempSync(join(tmpdir(), 'kova-agent-health-'));
afterAll(() => rmSync(stateDir, { recursive: true, force: true }));

function unreachableApi(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'down', server: 'https://127.0.0.1:9', skipTLSVerify: true }],
    users: [{ name: 'agent', token: 'x' }],
    contexts: [{ name: 'down', cluster: 'down', user: 'agent' }],
    currentContext: 'down',
  });
  return kc;
}

describe('node agent health', () => {
  it('#12.9 stays live through an API server outage (liveness = own loop + libvirt) while readiness fails', async () => {
    const config = {
      ...configFromEnv(),
      nodeName: 'health-node',
      libvirtUri: 'test:///default',
      stateDir,
      healthPort: 0,
    };
    const agent = new NodeAgent(unreachableApi(), config, quietLogger, new Registry());
    // start() waits for the informers' first list, which cannot come: the agent restarted into an
    // API outage.
    void agent.start();
    try {
      await until('libvirt connected', async () => agent.isHealthy() === true, 10_000, 50);
      await new Promise((r) => setTimeout(r, 1500));
      expect(agent.isHealthy()).toBe(true);
      expect(agent.isReady()).toBe('informers have not listed yet');
    } finally {
      await agent.stop();
    }
  });
});
