import { describe, expect, it } from '@jest/globals';
import { DomainState, ShutoffReason } from '../libvirt/constants.js';
import {
  CRASH_WINDOW_MS,
  MAX_RESTART_DELAY_MS,
  decidePower,
  type PowerInput,
  type RunStrategy,
} from './policy.js';

const NOW = 1_000_000;
const input = (over: Partial<PowerInput>): PowerInput => ({
  state: DomainState.RUNNING,
  reason: 0,
  strategy: 'Always',
  heldOff: undefined,
  backoff: undefined,
  shutdownRequestedMs: undefined,
  shutdownGraceMs: 60_000,
  now: NOW,
  ...over,
});
const STRATEGIES: RunStrategy[] = ['Always', 'RerunOnFailure', 'Halted', 'Manual'];
const STATES = Object.values(DomainState);
const REASONS = Object.values(ShutoffReason);

describe('decidePower over every state, stop reason, strategy and Halted history', () => {
  const all: PowerInput[] = [];
  for (const strategy of STRATEGIES)
    for (const state of STATES)
      for (const reason of REASONS)
        for (const heldOff of [undefined, 'Halted', 'PoweredOff'] as const)
          for (const shutdownRequestedMs of [undefined, NOW - 1000, NOW - 61_000])
            all.push(input({ strategy, state, reason, heldOff, shutdownRequestedMs }));

  it('Halted never starts a domain and ends every non-off state with a shutdown or destroy', () => {
    for (const i of all.filter((x) => x.strategy === 'Halted')) {
      const a = decidePower(i);
      expect(a.kind).not.toBe('start');
      if (i.state === DomainState.SHUTOFF)
        expect(a).toMatchObject({ kind: 'none', report: { phase: 'Stopped', reason: 'Halted' } });
      else expect(['shutdown', 'destroy', 'wait']).toContain(a.kind);
    }
  });

  it('Always restarts every stopped or crashed domain, whatever the reason', () => {
    for (const i of all.filter(
      (x) =>
        x.strategy === 'Always' &&
        (x.state === DomainState.SHUTOFF || x.state === DomainState.CRASHED),
    ))
      expect(decidePower(i).kind).toBe('start');
  });

  it('a running domain is left alone and reported Ready under Always and RerunOnFailure', () => {
    for (const i of all.filter((x) => x.strategy !== 'Halted' && x.state === DomainState.RUNNING))
      expect(decidePower(i)).toMatchObject({
        kind: 'none',
        report: { phase: 'Active', power: 'Running', ready: true },
      });
  });

  it('#12.10 a suspended guest (PMSUSPENDED) is reported Suspended and never started (no OPERATION_INVALID loop)', () => {
    for (const i of all.filter((x) => x.state === DomainState.PMSUSPENDED)) {
      const a = decidePower(i);
      if (i.strategy === 'Halted') expect(a.kind).toBe('destroy');
      else
        expect(a).toMatchObject({
          kind: 'none',
          report: { power: 'Suspended', reason: 'Suspended', ready: false },
        });
    }
  });

  it('only Halted and the power button ever shut down or destroy a domain', () => {
    for (const i of all.filter((x) => x.strategy !== 'Halted'))
      expect(['shutdown', 'destroy']).not.toContain(decidePower(i).kind);
  });
});

describe('RerunOnFailure', () => {
  const rerun = (over: Partial<PowerInput>) =>
    decidePower(input({ strategy: 'RerunOnFailure', state: DomainState.SHUTOFF, ...over }));

  it('leaves a guest off that shut itself down', () => {
    expect(rerun({ reason: ShutoffReason.SHUTDOWN })).toMatchObject({
      kind: 'none',
      report: { phase: 'Stopped', reason: 'GuestShutdown' },
    });
  });

  it('restarts a guest stopped any other way (crash, destroy, QEMU failure)', () => {
    for (const reason of [
      ShutoffReason.CRASHED,
      ShutoffReason.DESTROYED,
      ShutoffReason.FAILED,
      ShutoffReason.UNKNOWN,
    ])
      expect(rerun({ reason }).kind).toBe('start');
  });

  it('#12.10 Halted → RerunOnFailure starts the domain whether Halted shut it down or destroyed it', () => {
    for (const reason of [ShutoffReason.SHUTDOWN, ShutoffReason.DESTROYED])
      expect(rerun({ reason, heldOff: 'Halted' })).toMatchObject({
        kind: 'start',
        backoff: undefined,
      });
  });
});

describe('Manual', () => {
  it('never starts, shuts down or destroys a domain, whatever its state and history', () => {
    for (const strategy of ['Manual'] as const)
      for (const state of STATES)
        for (const reason of REASONS)
          for (const heldOff of [undefined, 'Halted', 'PoweredOff'] as const)
            expect(['none', 'wait']).toContain(
              decidePower(input({ strategy, state, reason, heldOff })).kind,
            );
  });

  it('reports a stopped domain Stopped and says how it stopped and how to start it', () => {
    const off = (over: Partial<PowerInput>) =>
      decidePower(input({ strategy: 'Manual', state: DomainState.SHUTOFF, ...over }));
    expect(off({ reason: ShutoffReason.SHUTDOWN })).toMatchObject({
      kind: 'none',
      report: { phase: 'Stopped', power: 'Shutdown', ready: false, reason: 'GuestShutdown' },
    });
    expect(off({ reason: ShutoffReason.DESTROYED, heldOff: 'PoweredOff' })).toMatchObject({
      report: { reason: 'PoweredOff', message: expect.stringContaining('kubectl kova start') },
    });
    expect(decidePower(input({ strategy: 'Manual', state: DomainState.CRASHED }))).toMatchObject({
      kind: 'none',
      report: { phase: 'Stopped', power: 'Crashed' },
    });
  });
});

describe('after a Stop action (Ready reason PoweredOff)', () => {
  const poweredOff = (strategy: RunStrategy, reason: number) =>
    decidePower(input({ strategy, state: DomainState.SHUTOFF, reason, heldOff: 'PoweredOff' }));

  it('RerunOnFailure leaves it off, also when the stop had to pull the plug', () => {
    for (const reason of [ShutoffReason.SHUTDOWN, ShutoffReason.DESTROYED])
      expect(poweredOff('RerunOnFailure', reason)).toMatchObject({
        kind: 'none',
        report: { phase: 'Stopped', reason: 'PoweredOff' },
      });
  });

  it('Always (the strategy changed since) starts it at once, without a crash backoff', () => {
    expect(poweredOff('Always', ShutoffReason.DESTROYED)).toMatchObject({
      kind: 'start',
      backoff: undefined,
    });
  });
});

describe('Halted', () => {
  const halted = (over: Partial<PowerInput>) => decidePower(input({ strategy: 'Halted', ...over }));

  it('asks a running guest to shut down first, without waiting for it', () => {
    expect(halted({})).toMatchObject({
      kind: 'shutdown',
      requeueAfterMs: 1000,
      report: { reason: 'Stopping', ready: false },
    });
  });

  it('waits while the grace lasts, then destroys', () => {
    expect(halted({ shutdownRequestedMs: NOW - 59_000 }).kind).toBe('wait');
    expect(halted({ shutdownRequestedMs: NOW - 60_000 }).kind).toBe('destroy');
    expect(halted({ state: DomainState.SHUTDOWN, shutdownRequestedMs: NOW - 60_000 }).kind).toBe(
      'destroy',
    );
  });

  it('destroys at once what cannot answer the power button (crashed, suspended)', () => {
    expect(halted({ state: DomainState.CRASHED }).kind).toBe('destroy');
    expect(halted({ state: DomainState.PMSUSPENDED }).kind).toBe('destroy');
  });
});

describe('crash-restart backoff', () => {
  const crashed = (count: number, sinceMs: number) =>
    decidePower(
      input({
        state: DomainState.SHUTOFF,
        reason: ShutoffReason.CRASHED,
        backoff: { count, lastRestartMs: NOW - sinceMs },
      }),
    );

  it('restarts the first two of a streak at once and counts them', () => {
    expect(
      decidePower(input({ state: DomainState.SHUTOFF, reason: ShutoffReason.CRASHED })),
    ).toMatchObject({ kind: 'start', backoff: { count: 1, lastRestartMs: NOW } });
    expect(crashed(1, 100)).toMatchObject({ kind: 'start', backoff: { count: 2 } });
  });

  it('then waits 2, 4, 8 s… after the last restart, at most 60 s', () => {
    expect(crashed(2, 500)).toMatchObject({ kind: 'backoff', requeueAfterMs: 1500 });
    expect(crashed(2, 2000)).toMatchObject({ kind: 'start', backoff: { count: 3 } });
    expect(crashed(3, 1000)).toMatchObject({ kind: 'backoff', requeueAfterMs: 3000 });
    expect(crashed(10, 1000)).toMatchObject({ kind: 'backoff', requeueAfterMs: 59_000 });
  });

  it('starts a new streak once the domain stayed up for the crash window beyond its delay', () => {
    const due = MAX_RESTART_DELAY_MS;
    expect(crashed(10, CRASH_WINDOW_MS + due)).toMatchObject({
      kind: 'start',
      backoff: { count: 1 },
    });
  });

  it('keeps a crash loop at the cap: the wait for a due restart does not end the streak', () => {
    const atCap = crashed(10, MAX_RESTART_DELAY_MS + 1000);
    expect(atCap).toMatchObject({ kind: 'start', backoff: { count: 11 } });
  });

  it('a start asked by a runStrategy change is no crash: no wait, streak cleared', () => {
    expect(
      decidePower(
        input({
          state: DomainState.SHUTOFF,
          heldOff: 'Halted',
          backoff: { count: 9, lastRestartMs: NOW },
        }),
      ),
    ).toMatchObject({ kind: 'start', backoff: undefined });
  });
});
