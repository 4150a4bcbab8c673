// The built plugin run as a user runs it, against the jest run's real API server with kova's
// CRDs and its kova-action-requester admission policy, as a ServiceAccount with only the rights
// the plugin needs. kova's operator and node agent do not run here: the test writes each
// action's status in their place.
import { describe, expect, it } from '@jest/globals';
import type { InstanceActionObject } from '@kova/crds';
import { kubectlPath, until } from '@kova/hack';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { pluginDir, pluginFixture } from './test-support.js';

const { user, start, run, actionsOf, createdFor, setStatus, kubeconfig } = pluginFixture(
  'kubectl-kova',
  ['web-1', 'ok-1', 'fail-1', 'slow-1'],
);

describe('kubectl kova against a real API server', () => {
  it('--no-wait creates the action, requested by the user the API server sees, and returns', async () => {
    const started = await run(['start', 'web-1', '--no-wait']);
    expect(started).toMatchObject({ code: 0, stderr: '' });
    expect(started.stdout).toMatch(
      /^instanceaction\.compute\.kova\.dev\/web-1-start-\w{5} created\n$/,
    );
    const [action] = await actionsOf('web-1');
    expect(started.stdout).toContain(`/${action?.metadata.name} created`);
    expect(action?.spec).toEqual({ instance: 'web-1', action: 'Start', requestedBy: user });

    const restarted = await run(['restart', 'web-1', '--hard', '--no-wait', '-o', 'json']);
    expect(restarted.code).toBe(0);
    const printed = JSON.parse(restarted.stdout) as InstanceActionObject;
    expect(printed.metadata.name).toMatch(/^web-1-restart-\w{5}$/);
    expect(printed.spec).toEqual({
      instance: 'web-1',
      action: 'Reboot',
      hard: true,
      requestedBy: user,
    });
  });

  it('waits, printing each phase and step, and says the Instance restarted when it Succeeded', async () => {
    const plugin = start(['restart', 'ok-1']);
    const name = (await createdFor('ok-1')).metadata.name;
    const ref = `instanceaction/${name}`;
    const printed = (line: string) =>
      until(`"${line}" on stderr`, () => plugin.stderr().includes(`${line}\n`), 10_000);

    await setStatus(name, { phase: 'Accepted', nodeName: 'hv-1' });
    await printed(`${ref}: Accepted`);
    const shutdown = { name: 'Shutdown', phase: 'Running' as const, startTime: now() };
    await setStatus(name, { phase: 'Running', startTime: now(), steps: [shutdown] });
    await printed(`${ref}: Running: Shutdown`);
    const done = { ...shutdown, phase: 'Succeeded' as const, completionTime: now() };
    await setStatus(name, {
      phase: 'Running',
      startTime: now(),
      steps: [done, { name: 'PowerOn', phase: 'Running', startTime: now() }],
    });
    await printed(`${ref}: Running: PowerOn`);
    await setStatus(name, { phase: 'Succeeded', reason: 'Succeeded', completionTime: now() });

    expect(await plugin.exit).toBe(0);
    expect(plugin.stdout()).toBe('instance/ok-1 restarted\n');
    expect(plugin.stderr()).toBe(
      [`${ref}: Accepted`, `${ref}: Running: Shutdown`, `${ref}: Running: PowerOn`, ''].join('\n'),
    );
  });

  it('exits 1 with the reason and message when the action Failed', async () => {
    const plugin = start(['pause', 'fail-1']);
    const name = (await createdFor('fail-1')).metadata.name;
    const message = 'Instance fail-1 is Shutdown; Pause needs it Running';
    await setStatus(name, { phase: 'Failed', reason: 'InvalidState', message });

    expect(await plugin.exit).toBe(1);
    expect(plugin.stdout()).toBe('');
    expect(plugin.stderr()).toBe(`error: InvalidState: ${message}\n`);
  });

  it("lists an Instance's actions oldest first, as a table or a List", async () => {
    const table = await run(['actions', 'web-1']);
    expect(table).toMatchObject({ code: 0, stderr: '' });
    const [header, ...rows] = table.stdout.trimEnd().split('\n');
    expect(header?.split(/\s+/)).toEqual([
      'NAME',
      'ACTION',
      'PHASE',
      'REASON',
      'USER',
      'STARTED',
      'DURATION',
      'AGE',
    ]);
    // Oldest first; creationTimestamp has whole seconds, so within one second by name.
    const stored = (await actionsOf('web-1')).map((a) => ({
      key: `${a.metadata.creationTimestamp} ${a.metadata.name}`,
      row: [a.metadata.name, a.spec.hard ? 'Reboot(hard)' : a.spec.action],
    }));
    expect(stored.map((a) => a.row).sort()).toEqual([
      [expect.stringMatching(/^web-1-restart-/), 'Reboot(hard)'],
      [expect.stringMatching(/^web-1-start-/), 'Start'],
    ]);
    stored.sort((a, b) => a.key.localeCompare(b.key));
    expect(rows.map((r) => r.split(/\s+/).slice(0, 5))).toEqual(
      stored.map((a) => [...a.row, '<none>', '<none>', user]),
    );

    const list = JSON.parse((await run(['actions', 'ok-1', '-o', 'json'])).stdout) as {
      kind: string;
      items: InstanceActionObject[];
    };
    expect(list.kind).toBe('List');
    expect(list.items.map((a) => [a.spec.instance, a.spec.action, a.status?.phase])).toEqual([
      ['ok-1', 'Reboot', 'Succeeded'],
    ]);

    // -n overrides the context's namespace; the ServiceAccount may not list there, and the
    // server's refusal is printed as kubectl prints it.
    expect(await run(['actions', 'web-1', '-n', 'default'])).toEqual({
      code: 1,
      stdout: '',
      stderr:
        'Error from server (Forbidden): instanceactions.compute.kova.dev is forbidden: ' +
        `User "${user}" cannot list resource "instanceactions" in API group "compute.kova.dev" ` +
        'in the namespace "default"\n',
    });
    expect(await run(['actions', 'web-1', '--context', 'nope'])).toEqual({
      code: 1,
      stdout: '',
      stderr: 'error: context "nope" does not exist\n',
    });
  });

  it('refuses a missing Instance as kubectl would, before creating anything', async () => {
    expect(await run(['stop', 'nope'])).toEqual({
      code: 1,
      stdout: '',
      stderr: 'Error from server (NotFound): instances.compute.kova.dev "nope" not found\n',
    });
    expect(await actionsOf('nope')).toEqual([]);
  });

  it('gives up after --timeout, naming the action, when nobody answers', async () => {
    const began = Date.now();
    const result = await run(['stop', 'slow-1', '--timeout', '2s']);
    const [action] = await actionsOf('slow-1');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(
      `error: timed out after 2s waiting for instanceaction/${action?.metadata.name} to finish`,
    );
    expect(Date.now() - began).toBeGreaterThanOrEqual(2000);
    expect(Date.now() - began).toBeLessThan(15_000);
  });

  it('runs as `kubectl kova` from the shim on PATH', async () => {
    const result = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
      const child = spawn(
        kubectlPath(),
        ['kova', 'actions', 'ok-1', '--kubeconfig', kubeconfig()],
        {
          env: { ...process.env, PATH: `${join(pluginDir, 'bin')}:${process.env.PATH}` },
        },
      );
      let stdout = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.on('close', (code) => resolve({ code, stdout }));
    });
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^NAME +ACTION .*\nok-1-restart-\w{5} +Reboot +Succeeded /);
  });
});

const now = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');
