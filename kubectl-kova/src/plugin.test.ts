// The built plugin run as a user runs it, against the jest run's real API server with kova's
// CRDs and its kova-action-requester admission policy, as a ServiceAccount with only the rights
// the plugin needs. kova's operator and node agent do not run here: the test writes each
// action's status in their place.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { loadKubeConfig } from '@kova/controller-kit';
import { GROUP, type InstanceActionObject } from '@kova/crds';
import { kubectlPath, until } from '@kova/hack';
import { spawn } from 'node:child_process';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { pluginDir, pluginFixture } from './test-support.js';

const { ns, user, start, run, actionsOf, createdFor, setStatus, kubeconfig } = pluginFixture(
  'kubectl-kova',
  ['web-1', 'ok-1', 'fail-1', 'slow-1', 'once-1', 'week-1', 'net-1', 'as-1'],
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
  });

  it("refuses a context, cluster or user the kubeconfig lacks in kubectl 1.35's words", async () => {
    // As `kubectl --context nope get pods` prints it, prefix included.
    expect(await run(['actions', 'web-1', '--context', 'nope'])).toEqual({
      code: 1,
      stdout: '',
      stderr: 'Error in configuration: context was not found for specified context: nope\n',
    });
    expect(await run(['actions', 'web-1', '--cluster', 'nope'])).toEqual({
      code: 1,
      stdout: '',
      stderr: 'error: no server found for cluster "nope"\n',
    });
    expect(await run(['actions', 'web-1', '--user=nope'])).toEqual({
      code: 1,
      stdout: '',
      stderr: 'error: auth info "nope" does not exist\n',
    });
    expect(await run(['actions', 'web-1', '--as-group', 'g'])).toEqual({
      code: 1,
      stdout: '',
      stderr:
        'error: requesting uid, groups or user-extra for operator-on-call without impersonating a user\n',
    });
    // Naming the kubeconfig's own cluster and user changes nothing.
    expect(
      await run(['actions', 'web-1', '--cluster=kova', '--user', 'operator-on-call']),
    ).toMatchObject({ code: 0, stderr: '' });
  });

  it('authenticates with --token instead of the kubeconfig user, and bounds requests with --request-timeout', async () => {
    expect(await run(['actions', 'web-1', '--token', 'not-a-token'])).toEqual({
      code: 1,
      stdout: '',
      stderr: 'error: Unauthorized: the API server refused the credentials (401)\n',
    });
    expect(await run(['actions', 'web-1', '--request-timeout=1ms'])).toEqual({
      code: 1,
      stdout: '',
      stderr: 'error: the API server did not answer within --request-timeout\n',
    });
    expect(await run(['actions', 'web-1', '--request-timeout', '30'])).toMatchObject({
      code: 0,
      stderr: '',
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

  it('--timeout 0 checks once and gives up; a negative --timeout waits on', async () => {
    const began = Date.now();
    const once = await run(['stop', 'once-1', '--timeout=0']);
    const [action] = await actionsOf('once-1');
    expect(once).toEqual({
      code: 1,
      stdout: '',
      stderr:
        `error: timed out after 0s waiting for instanceaction/${action?.metadata.name} to ` +
        'finish (phase: none yet); the action goes on, see kubectl kova actions once-1\n',
    });
    expect(Date.now() - began).toBeLessThan(10_000);

    const plugin = start(['stop', 'week-1', '--timeout=-1s']);
    const name = (await createdFor('week-1')).metadata.name;
    await new Promise((r) => setTimeout(r, 1000));
    await setStatus(name, { phase: 'Succeeded', reason: 'Succeeded', completionTime: now() });
    expect(await plugin.exit).toBe(0);
    expect(plugin.stdout()).toBe('instance/week-1 stopped\n');
  });

  it('rides out the API server going away mid-watch, retrying until it answers', async () => {
    // The plugin reaches the API server through a TCP relay (--server), which is then shut:
    // the watch breaks, and the reads after it are refused until the relay listens again.
    const relay = await tcpRelay(new URL(serverUrl()));
    try {
      const server = new URL(serverUrl());
      server.port = String(relay.port);
      // With a trailing slash, as URLs are often written (href ends in '/').
      const plugin = start(['stop', 'net-1', '--server', server.href, '--timeout', '1m']);
      const name = (await createdFor('net-1')).metadata.name;
      await until('the plugin watching through the relay', () => relay.connections() > 0);
      await new Promise((r) => setTimeout(r, 500));
      await relay.shut();
      await new Promise((r) => setTimeout(r, 1500));
      await setStatus(name, { phase: 'Succeeded', reason: 'Succeeded', completionTime: now() });
      await new Promise((r) => setTimeout(r, 1500));
      expect(plugin.stdout()).toBe('');
      await relay.open();

      expect(await plugin.exit).toBe(0);
      expect(plugin.stdout()).toBe('instance/net-1 stopped\n');
      expect(plugin.stderr()).toBe('');
    } finally {
      // Shut also when it failed: an open relay would keep jest (and the heavy lock) alive.
      await relay.shut();
    }
  });

  describe('impersonating with --as and --as-group', () => {
    const rbac = () => loadKubeConfig().makeApiClient(RbacAuthorizationV1Api);
    const impersonator = `${ns}-impersonator`;

    beforeAll(async () => {
      // The ServiceAccount may impersonate alice in two groups; only the second group has the
      // plugin's rights, so the action is let in only if both groups reach the API server.
      await rbac().createClusterRole({
        body: {
          metadata: { name: impersonator },
          rules: [
            {
              apiGroups: [''],
              resources: ['users'],
              verbs: ['impersonate'],
              resourceNames: ['alice'],
            },
            {
              apiGroups: [''],
              resources: ['groups'],
              verbs: ['impersonate'],
              resourceNames: ['kova-oncall', 'kova-operators'],
            },
          ],
        },
      });
      await rbac().createClusterRoleBinding({
        body: {
          metadata: { name: impersonator },
          roleRef: {
            apiGroup: 'rbac.authorization.k8s.io',
            kind: 'ClusterRole',
            name: impersonator,
          },
          subjects: [{ kind: 'ServiceAccount', name: user.split(':')[3] as string, namespace: ns }],
        },
      });
      await rbac().createNamespacedRoleBinding({
        namespace: ns,
        body: {
          metadata: { name: 'kova-operators' },
          roleRef: {
            apiGroup: 'rbac.authorization.k8s.io',
            kind: 'Role',
            name: 'operator-on-call',
          },
          subjects: [
            { kind: 'Group', name: 'kova-operators', apiGroup: 'rbac.authorization.k8s.io' },
          ],
        },
      });
    });

    afterAll(async () => {
      await rbac().deleteClusterRoleBinding({ name: impersonator });
      await rbac().deleteClusterRole({ name: impersonator });
    });

    it('acts as the impersonated user, who is then the requester', async () => {
      const as = ['--as', 'alice', '--as-group=kova-oncall', '--as-group', 'kova-operators'];
      const plugin = start(['stop', 'as-1', ...as]);
      const action = await createdFor('as-1');
      expect(action.spec.requestedBy).toBe('alice');
      await setStatus(action.metadata.name, { phase: 'Succeeded', reason: 'Succeeded' });
      expect(await plugin.exit).toBe(0);
      expect(plugin.stdout()).toBe('instance/as-1 stopped\n');

      // Without the group that has the rights, alice may not even read the Instance.
      expect(await run(['stop', 'as-1', '--as', 'alice', '--as-group', 'kova-oncall'])).toEqual({
        code: 1,
        stdout: '',
        stderr:
          'Error from server (Forbidden): instances.compute.kova.dev "as-1" is forbidden: User ' +
          `"alice" cannot get resource "instances" in API group "${GROUP}" in the namespace "${ns}"\n`,
      });
    });
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

const serverUrl = () => {
  const server = loadKubeConfig().getCurrentCluster()?.server;
  if (!server) throw new Error('the test kubeconfig names no server');
  return server;
};

/**
 * A TCP relay on a port of its own to `to` (TLS passes through it untouched), that can be shut
 * (its connections broken, new ones refused) and opened again on the same port.
 */
async function tcpRelay(to: URL) {
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  let opened = 0;
  const open = async () => {
    server = createServer((client) => {
      opened++;
      const upstream = connect(Number(to.port), to.hostname);
      for (const [a, b] of [
        [client, upstream],
        [upstream, client],
      ] as const) {
        sockets.add(a);
        a.pipe(b);
        a.on('error', () => b.destroy());
        a.on('close', () => (sockets.delete(a), b.destroy()));
      }
    });
    // On the API server's own address, which its certificate names.
    await new Promise<void>((r) => server?.listen(port, to.hostname, r));
    port = (server.address() as AddressInfo).port;
  };
  await open();
  return {
    port,
    connections: () => opened,
    open,
    shut: async () => {
      const closed = new Promise((r) => server?.close(r));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}
