// `npm start` as a user runs it, in a terminal: it boots the demo, takes the user's own
// Instances, restarts a component that was killed, and when the terminal is closed (SIGHUP,
// the operator killed just before) removes every Instance and stops everything. And when even
// the API server is gone, `kill` still leaves nothing behind, and the last line says so truly.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { CoreV1Api } from '@kubernetes/client-node';
import { loadKubeConfig } from '@kova/controller-kit';
import { until } from '@kova/hack';
import { NpmStart } from './npm-start.js';

const NOTHING_LEFT =
  'Stopped; no domain, tap, bridge, process or temporary directory of this run is left.';

describe('npm start, its terminal closed', () => {
  let run: NpmStart;
  beforeAll(async () => {
    run = await NpmStart.start();
  }, 300_000);
  afterAll(() => run?.abandon());

  it('boots the demo Instance and shows its serial console and HTTP answer', () => {
    expect(run.output).toMatch(/✓ Active after [\d.]+ s — 10\.77\.0\.\d+ on \S+, power Running/);
    expect(run.output).toMatch(
      /serial console: kova-guest: instance-id=[0-9a-f-]{36} hostname=demo/,
    );
    expect(run.output).toMatch(/http:\/\/10\.77\.0\.\d+\/ answers: [0-9a-f-]{36}/);
  });

  it("restarts the operator after kill -9, and the new one runs the user's Instances", async () => {
    const killed = await run.pidOf('operator/dist/main.js');
    process.kill(killed, 'SIGKILL');
    const restarted = await until(
      'a new operator',
      async () => {
        const pid = await run.pidOf('operator/dist/main.js').catch(() => undefined);
        return pid !== killed && pid;
      },
      30_000,
      200,
    );
    expect(restarted).not.toBe(killed);
    expect(run.output).toContain('operator exited; restarting it');
    // The user's own Instances, in default and in a namespace of their own.
    await loadKubeConfig(run.kubeconfigPath)
      .makeApiClient(CoreV1Api)
      .createNamespace({ body: { metadata: { name: 'team-a' } } });
    for (const [ns, name] of [
      ['default', 'mine-1'],
      ['default', 'mine-2'],
      ['team-a', 'theirs'],
    ] as const)
      await run.create(ns, name);
    await until(
      'every Instance Active',
      async () => (await run.instances()).every((i) => i.status?.phase === 'Active'),
      120_000,
      250,
    );
    expect((await run.instances()).map((i) => i.metadata.name).sort()).toEqual([
      'demo',
      'mine-1',
      'mine-2',
      'theirs',
    ]);
  });

  it('closing its terminal with the operator killed removes every Instance and all of the run', async () => {
    const uids = (await run.instances()).map((i) => i.metadata.uid);
    const pids = await run.processes();
    process.kill(await run.pidOf('operator/dist/main.js'), 'SIGKILL');
    run.closeTerminal(); // the kernel hangs up the session: SIGHUP
    await run.finished();
    expect(await run.leftovers(uids, pids)).toEqual([]);
  }, 200_000);
});

describe('npm start, its API server gone', () => {
  let run: NpmStart;
  beforeAll(async () => {
    run = await NpmStart.start();
  }, 300_000);
  afterAll(() => run?.abandon());

  it('on kill removes the domains directly, leaves nothing and says so', async () => {
    await run.create('default', 'mine');
    await until(
      'mine Active',
      async () => (await run.instances()).every((i) => i.status?.phase === 'Active'),
      120_000,
      250,
    );
    const uids = (await run.instances()).map((i) => i.metadata.uid);
    const pids = await run.processes();
    process.kill(await run.pidOf('kube-apiserver'), 'SIGKILL');
    process.kill(run.runPid, 'SIGTERM');
    await run.finished();
    expect(run.output).toContain('removing them directly');
    expect(run.output).toContain(NOTHING_LEFT);
    expect(await run.leftovers(uids, pids)).toEqual([]);
  }, 200_000);
});
