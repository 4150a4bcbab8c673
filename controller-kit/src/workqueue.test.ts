import { describe, expect, it } from '@jest/globals';
import { Registry } from 'prom-client';
import { WorkQueue } from './workqueue.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const newQueue = (opts: Partial<ConstructorParameters<typeof WorkQueue>[0]> = {}) =>
  new WorkQueue({ name: 'test', registry: new Registry(), ...opts });

describe('WorkQueue', () => {
  it('hands a key added many times while waiting to a worker once', async () => {
    const q = newQueue();
    for (let i = 0; i < 10; i++) q.add('a');
    q.add('b');
    const seen: string[] = [];
    const run = q.run(async (key) => {
      seen.push(key);
    }, 2);
    await sleep(20);
    q.shutDown();
    await run;
    expect(seen.sort()).toEqual(['a', 'b']);
  });

  it('never gives one key to two workers, and reruns a key added while it was processed', async () => {
    const q = newQueue();
    let inFlight = 0;
    let maxInFlight = 0;
    let runs = 0;
    const run = q.run(async () => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      runs++;
      await sleep(30);
      inFlight--;
    }, 4);
    q.add('k');
    await sleep(5);
    q.add('k'); // arrives while the first run is in progress
    q.add('k'); // de-duplicated with the one above
    await sleep(100);
    q.shutDown();
    await run;
    expect(maxInFlight).toBe(1);
    expect(runs).toBe(2);
  });

  it('runs different keys in parallel up to the number of workers', async () => {
    const q = newQueue();
    let inFlight = 0;
    let maxInFlight = 0;
    const run = q.run(async () => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await sleep(30);
      inFlight--;
    }, 3);
    for (const k of ['a', 'b', 'c', 'd', 'e']) q.add(k);
    await sleep(100);
    q.shutDown();
    await run;
    expect(maxInFlight).toBe(3);
  });

  it('retries a failing key with per-key exponential backoff and resets it after success', async () => {
    const q = newQueue({ baseDelayMs: 10, maxDelayMs: 1000 });
    const attempts: number[] = [];
    const start = Date.now();
    const run = q.run(async (key) => {
      if (key !== 'flaky') return;
      attempts.push(Date.now() - start);
      if (attempts.length < 4) throw new Error('not yet');
    }, 1);
    q.add('flaky');
    await sleep(250);
    q.shutDown();
    await run;
    expect(attempts).toHaveLength(4);
    const gaps = attempts.slice(1).map((t, i) => t - (attempts[i] as number));
    // Delays of 10, 20 and 40 ms (timers may fire late, never early).
    expect(gaps[0]).toBeGreaterThanOrEqual(9);
    expect(gaps[1]).toBeGreaterThanOrEqual(19);
    expect(gaps[2]).toBeGreaterThanOrEqual(39);
    expect(q.failureCount('flaky')).toBe(0);
  });

  it('caps the backoff at the maximum delay', () => {
    const q = newQueue({ baseDelayMs: 100, maxDelayMs: 500 });
    const delays = Array.from({ length: 6 }, () => q.addRateLimited('x'));
    q.shutDown();
    expect(delays).toEqual([100, 200, 400, 500, 500, 500]);
  });

  it('spaces retries of many keys by an overall rate once the burst is spent', () => {
    const q = newQueue({ baseDelayMs: 1, overallQps: 10, overallBurst: 5 });
    const delays = Array.from({ length: 10 }, (_, i) => q.addRateLimited(`key-${i}`));
    q.shutDown();
    expect(delays.slice(0, 5)).toEqual([1, 1, 1, 1, 1]);
    // The 6th retry waits for one token at 10/s (100 ms), each later one 100 ms more.
    expect(delays[5]).toBeGreaterThanOrEqual(90);
    expect(delays[9]).toBeGreaterThanOrEqual(490);
    expect(delays[9]).toBeLessThanOrEqual(510);
  });

  it('requeues a key after the delay its handler asks for', async () => {
    const q = newQueue();
    let runs = 0;
    const run = q.run(async () => (++runs === 1 ? { requeueAfterMs: 20 } : undefined), 1);
    q.add('poll');
    await sleep(10);
    expect(runs).toBe(1);
    await sleep(40);
    q.shutDown();
    await run;
    expect(runs).toBe(2);
  });

  it('keeps the earlier of two delayed adds of one key', async () => {
    const q = newQueue();
    const seen: number[] = [];
    const start = Date.now();
    const run = q.run(async () => {
      seen.push(Date.now() - start);
    }, 1);
    q.addAfter('k', 200);
    q.addAfter('k', 10);
    await sleep(60);
    q.shutDown();
    await run;
    expect(seen).toHaveLength(1);
    expect(seen[0]).toBeLessThan(200);
  });

  it('lets the key in hand finish on shutdown and hands out no more', async () => {
    const q = newQueue();
    const finished: string[] = [];
    const run = q.run(async (key) => {
      await sleep(30);
      finished.push(key);
    }, 1);
    q.add('first');
    q.add('second');
    await sleep(5);
    q.shutDown();
    await run;
    expect(finished).toEqual(['first']);
  });
});
