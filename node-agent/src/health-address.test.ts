// The agent runs in the node's network namespace (hostNetwork), so where its health and metrics
// port listens is where the node exposes it: KOVA_HEALTH_ADDRESS (the chart's
// agent.healthAddress) 127.0.0.1 keeps it off the node's network, unset listens on all
// addresses for Prometheus. The agent process itself, against an API server that does not answer.
// Another loopback address (127.0.0.2) stands for the node's: a socket bound to 127.0.0.1 does
// not accept there, one bound to all addresses does.
import { afterAll, expect, it } from '@jest/globals';
import { until } from '@kova/hack';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const mainJs = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'main.js');
const dir = mkdtempSync(join(tmpdir(), 'kova-agent-health-address-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const kubeconfig = join(dir, 'kubeconfig');
writeFileSync(
  kubeconfig,
  JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'down', cluster: { server: 'https://127.0.0.1:9' } }],
    users: [{ name: 'agent', user: { token: 'x' } }],
    contexts: [{ name: 'down', context: { cluster: 'down', user: 'agent' } }],
    'current-context': 'down',
  }),
);

const NODE_ADDRESS = '127.0.0.2';

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

const accepts = (host: string, port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, host);
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });

/** Where an agent started with this KOVA_HEALTH_ADDRESS accepts connections on its health port. */
async function reachable(address: string | undefined): Promise<Record<string, boolean>> {
  const port = await freePort();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    KUBECONFIG: kubeconfig,
    KOVA_NODE_NAME: 'health-address-node',
    KOVA_LIBVIRT_URI: 'test:///default',
    KOVA_STATE_DIR: join(dir, 'state'),
    KOVA_HEALTH_PORT: String(port),
    KOVA_LOG_LEVEL: 'error',
  };
  if (address) env.KOVA_HEALTH_ADDRESS = address;
  else delete env.KOVA_HEALTH_ADDRESS;
  const agent = spawn(process.execPath, [mainJs], { env, stdio: 'ignore' });
  try {
    await until('the agent serves health', () => accepts('127.0.0.1', port));
    return { loopback: true, node: await accepts(NODE_ADDRESS, port) };
  } finally {
    agent.kill('SIGKILL');
  }
}

it('listens on all addresses by default, for Prometheus', async () => {
  expect(await reachable(undefined)).toEqual({ loopback: true, node: true });
});

it('listens on loopback only with KOVA_HEALTH_ADDRESS=127.0.0.1', async () => {
  expect(await reachable('127.0.0.1')).toEqual({ loopback: true, node: false });
});
