import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { CoordinationV1Api, type KubeConfig } from '@kubernetes/client-node';
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { loadKubeConfig } from './kubeconfig.js';
import { until } from '@kova/hack';
import { createNamespace, deleteNamespace } from './test-support.js';

const contenderScript = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  'testdata',
  'lease-contender.mjs',
);
const LEASE_DURATION_MS = 3000;

interface Contender {
  identity: string;
  proc: ChildProcess;
  events: { event: string; at: number }[];
}

function contender(lease: string, ns: string, identity: string): Contender {
  const proc = spawn(process.execPath, [contenderScript, lease, ns, identity], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const c: Contender = { identity, proc, events: [] };
  createInterface({ input: proc.stdout! }).on('line', (line) => c.events.push(JSON.parse(line)));
  return c;
}

const leading = (c: Contender) =>
  c.events.filter((e) => e.event === 'leading').length >
  c.events.filter((e) => e.event === 'stopped').length;
const firstLeadAt = (c: Contender) => c.events.find((e) => e.event === 'leading')?.at;

describe('LeaderElector', () => {
  let kc: KubeConfig;
  let ns: string;
  let running: Contender[] = [];

  beforeAll(async () => {
    kc = loadKubeConfig();
    ns = await createNamespace(kc, 'leader');
  });
  afterAll(async () => {
    for (const c of running) c.proc.kill('SIGKILL');
    await deleteNamespace(kc, ns);
  });

  const holder = async (lease: string) =>
    (await kc.makeApiClient(CoordinationV1Api).readNamespacedLease({ name: lease, namespace: ns }))
      .spec?.holderIdentity;

  it('lets exactly one of two contenders lead, and the other take over within the lease duration after the leader is killed', async () => {
    const a = contender('kill-test', ns, 'a');
    const b = contender('kill-test', ns, 'b');
    running = [a, b];
    const leader = await until(
      'a leader',
      () => (leading(a) ? a : leading(b) ? b : undefined),
      15_000,
    );
    const other = leader === a ? b : a;
    await new Promise((r) => setTimeout(r, 1500)); // several renew periods: the follower must stay a follower
    expect(leading(other)).toBe(false);
    expect(await holder('kill-test')).toBe(leader.identity);

    const killedAt = Date.now();
    leader.proc.kill('SIGKILL');
    await until('the follower to take over', () => leading(other), LEASE_DURATION_MS + 3000);
    const takeover = (firstLeadAt(other) as number) - killedAt;
    // The Lease must run out first (observed by the follower's clock), and then be taken at the next retry.
    expect(takeover).toBeLessThanOrEqual(LEASE_DURATION_MS + 1000);
    expect(await holder('kill-test')).toBe(other.identity);
    other.proc.kill('SIGKILL');
  });

  it('releases the Lease on shutdown so the other contender takes over without waiting for expiry', async () => {
    const a = contender('release-test', ns, 'a');
    const b = contender('release-test', ns, 'b');
    running = [a, b];
    const leader = await until(
      'a leader',
      () => (leading(a) ? a : leading(b) ? b : undefined),
      15_000,
    );
    const other = leader === a ? b : a;
    const releasedAt = Date.now();
    leader.proc.kill('SIGTERM');
    await until(
      'the leader to release',
      () => leader.events.some((e) => e.event === 'released'),
      5000,
    );
    await until('the follower to take over', () => leading(other), 5000);
    expect((firstLeadAt(other) as number) - releasedAt).toBeLessThan(LEASE_DURATION_MS);
    other.proc.kill('SIGKILL');
  });
});
