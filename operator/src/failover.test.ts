// Two operator processes against one real API server: the leader is killed with SIGKILL in the
// middle of a burst; the other takes over and finishes with the same guarantees.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { API_VERSION, GROUP, PLURAL, VERSION, type IIPBlock } from '@kova/crds';
import type { LocalControlPlane, SimulatedFleet } from '@kova/hack';
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { InstanceObject as Instance } from '@kova/crds';
import { startFleetCluster, stopFleetCluster } from './test-support.js';

const mainJs = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'main.js');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const kova = (plural: string) => ({ group: GROUP, version: VERSION, plural });

let cp: LocalControlPlane;
let kc: KubeConfig;
let api: CustomObjectsApi;
let fleet: SimulatedFleet;
const operators: ChildProcess[] = [];

function startOperator(identity: string): ChildProcess {
  const proc = spawn(process.execPath, [mainJs], {
    env: {
      ...process.env,
      KUBECONFIG: cp.endpoints.kubeconfigPath,
      POD_NAME: identity,
      KOVA_HEALTH_PORT: '0',
      KOVA_LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  operators.push(proc);
  return proc;
}

async function leaseHolder(): Promise<string | undefined> {
  const { CoordinationV1Api } = await import('@kubernetes/client-node');
  const lease = await kc
    .makeApiClient(CoordinationV1Api)
    .readNamespacedLease({ name: 'kova-operator', namespace: 'kova-system' })
    .catch(() => undefined);
  return lease?.spec?.holderIdentity ?? undefined;
}

const list = async <T>(plural: string, namespace?: string) =>
  (
    (namespace
      ? await api.listNamespacedCustomObject({ ...kova(plural), namespace })
      : await api.listClusterCustomObject(kova(plural))) as { items: T[] }
  ).items;

beforeAll(async () => {
  ({ cp, kc, api, fleet } = await startFleetCluster(
    Array.from({ length: 10 }, (_, i) => ({
      name: `hv-${i}`,
      vcpus: 8,
      memoryMiB: 16 * 1024 + 512,
      diskGiB: 500,
    })),
    2000,
  ));
  const create = (kind: string, body: object) =>
    api.createClusterCustomObject({
      ...kova(PLURAL[kind as keyof typeof PLURAL]),
      body: { apiVersion: API_VERSION, kind, ...body },
    });
  await create('Flavor', {
    metadata: { name: 'small' },
    spec: { vcpus: 1, memoryMiB: 1024, rootDiskGiB: 10 },
  });
  await create('Image', {
    metadata: { name: 'guest' },
    spec: { source: '/var/lib/kova/guest.qcow2', sha256: 'a'.repeat(64) },
  });
  await create('Network', {
    metadata: { name: 'net1' },
    spec: { cidr: '10.50.0.0/22', gateway: '10.50.0.1', bridge: 'br-net1' },
  });
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: 'burst' } } });
}, 120_000);

afterAll(async () => {
  for (const p of operators) p.kill('SIGKILL');
  await stopFleetCluster({ cp, fleet });
});

describe('operator failover', () => {
  it('finishes a burst after its leader is killed, with no over-commit, no duplicate address and nothing leaked', async () => {
    const a = startOperator('operator-a');
    const b = startOperator('operator-b');
    let holder: string | undefined;
    while (!(holder = await leaseHolder())) await sleep(100);
    const leader = holder === 'operator-a' ? a : b;

    const total = 300; // 10 hypervisors × 16 Instances fit: 160 bind, 140 wait
    const names = Array.from({ length: total }, (_, i) => `vm-${i}`);
    const creating = (async () => {
      for (let i = 0; i < names.length; i += 25) {
        await Promise.all(
          names.slice(i, i + 25).map((name) =>
            api.createNamespacedCustomObject({
              ...kova('instances'),
              namespace: 'burst',
              body: {
                apiVersion: API_VERSION,
                kind: 'Instance',
                metadata: { name },
                spec: { flavor: 'small', image: 'guest', networks: [{ network: 'net1' }] },
              },
            }),
          ),
        );
      }
    })();
    for (;;) {
      const bound = (await list<Instance>('instances', 'burst')).filter(
        (i) => i.status?.nodeName,
      ).length;
      if (bound >= 40) break;
      await sleep(50);
    }
    leader.kill('SIGKILL');
    await creating;

    const deadline = Date.now() + 120_000;
    let items: Instance[] = [];
    for (;;) {
      items = await list<Instance>('instances', 'burst');
      const settled = items.filter(
        (i) =>
          (i.status?.phase === 'Networking' && i.status.interfaces?.length) ||
          i.status?.conditions?.some((c) => c.reason === 'NoValidHost'),
      );
      if (settled.length === total) break;
      if (Date.now() > deadline)
        throw new Error(`only ${settled.length}/${total} settled after failover`);
      await sleep(250);
    }
    expect(await leaseHolder()).not.toBe(holder);

    const perNode = new Map<string, number>();
    for (const i of items)
      if (i.status?.nodeName)
        perNode.set(i.status.nodeName, (perNode.get(i.status.nodeName) ?? 0) + 1);
    for (const n of perNode.values()) expect(n).toBeLessThanOrEqual(16);
    expect([...perNode.values()].reduce((x, y) => x + y, 0)).toBe(160);

    const ifaces = items.flatMap((i) => i.status?.interfaces ?? []);
    expect(new Set(ifaces.map((f) => f.ip)).size).toBe(ifaces.length);
    const allocs = (await list<IIPBlock>('ipblocks')).flatMap((b) => b.spec.addresses ?? []);
    expect(allocs.length).toBe(ifaces.length);
    const bound = new Set(items.filter((i) => i.status?.nodeName).map((i) => i.metadata.uid));
    for (const al of allocs) expect(bound.has(al.instance.uid)).toBe(true);
  });
});
