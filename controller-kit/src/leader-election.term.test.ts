// The leader's term against the real API server: what happens when the leader's work fails,
// when the API server stops answering, and in which order a term ends.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { CoordinationV1Api, type KubeConfig } from '@kubernetes/client-node';
import { until } from '@kova/hack';
import { loadKubeConfig } from './kubeconfig.js';
import { LeaderElector, type LeaderElectionOptions } from './leader-election.js';
import { createNamespace, deleteNamespace, FreezableProxy, kubeConfigVia } from './test-support.js';

const TIMING = { leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 300 };

describe('LeaderElector terms', () => {
  let kc: KubeConfig;
  let ns: string;
  const electors: LeaderElector[] = [];

  beforeAll(async () => {
    kc = loadKubeConfig();
    ns = await createNamespace(kc, 'term');
  });
  afterAll(async () => {
    await Promise.all(electors.map((e) => e.release()));
    await deleteNamespace(kc, ns);
  });

  const elector = (
    config: KubeConfig,
    lease: string,
    onStartedLeading: LeaderElectionOptions['onStartedLeading'],
    onStoppedLeading?: () => void,
  ) => {
    const e = new LeaderElector(config, {
      lease,
      namespace: ns,
      identity: 'me',
      ...TIMING,
      onStartedLeading,
      onStoppedLeading,
    });
    electors.push(e);
    e.start();
    return e;
  };
  const holder = async (lease: string) =>
    (await kc.makeApiClient(CoordinationV1Api).readNamespacedLease({ name: lease, namespace: ns }))
      .spec?.holderIdentity;

  it('#12.1 steps down when the leader work fails, and leads again with fresh work', async () => {
    let terms = 0;
    let stopped = 0;
    elector(
      kc,
      'failing-work',
      async (signal) => {
        terms++;
        if (terms === 1) throw new Error('injected: orphan cleanup failed with 500');
        await new Promise((r) => signal.addEventListener('abort', r, { once: true }));
      },
      () => stopped++,
    );
    await until('a second term after the failed one', () => terms >= 2, 10_000);
    expect(stopped).toBeGreaterThanOrEqual(1);
  });

  it('#12.3 releases the Lease only after the leader work has stopped', async () => {
    let holderWhenAborted: string | undefined;
    let workStopped = false;
    const e = elector(kc, 'ordered-release', async (signal) => {
      await new Promise((r) => signal.addEventListener('abort', r, { once: true }));
      holderWhenAborted = await holder('ordered-release');
      await new Promise((r) => setTimeout(r, 300));
      workStopped = true;
    });
    await until('leading', () => e.isLeader(), 10_000);
    await e.release();
    expect(workStopped).toBe(true);
    // The work still held the Lease while it wound down; only then was it released.
    expect(holderWhenAborted).toBe('me');
    expect(await holder('ordered-release')).toBeFalsy();
  });

  it('#12.3 reports a term whose work does not stop within the renew deadline as stuck', async () => {
    let stuckAfter = 0;
    let released = false;
    const e = new LeaderElector(kc, {
      lease: 'stuck-term',
      namespace: ns,
      identity: 'me',
      ...TIMING,
      onStartedLeading: () => new Promise<void>((r) => setTimeout(r, 4000)), // ignores the abort
      onTermStuck: () => (stuckAfter = Date.now()),
    });
    e.start();
    await until('leading', () => e.isLeader(), 10_000);
    const releasedAt = Date.now();
    const releasing = e.release().then(() => (released = true));
    await until('the term reported stuck', () => stuckAfter > 0, 5000);
    expect(stuckAfter - releasedAt).toBeGreaterThanOrEqual(TIMING.renewDeadlineMs - 50);
    // The Lease is kept until the work has really stopped.
    expect(released).toBe(false);
    expect(await holder('stuck-term')).toBe('me');
    await releasing;
  });

  it('#12.3 steps down within the renew deadline when the API server stops answering', async () => {
    const proxy = await FreezableProxy.start(new URL(kc.getCurrentCluster()!.server));
    let aborted = 0;
    const e = elector(kubeConfigVia(kc, proxy.url), 'hung-renew', async (signal) => {
      await new Promise((r) => signal.addEventListener('abort', r, { once: true }));
      aborted = Date.now();
    });
    await until('leading', () => e.isLeader(), 10_000);
    const frozenAt = Date.now();
    proxy.freeze();
    await until('the term to end', () => aborted > 0, TIMING.renewDeadlineMs + 3000);
    expect(aborted - frozenAt).toBeLessThanOrEqual(
      TIMING.renewDeadlineMs + TIMING.retryPeriodMs + 500,
    );
    expect(e.isLeader()).toBe(false);
    electors.splice(electors.indexOf(e), 1);
    void e.release();
    await proxy.stop();
  });
});
