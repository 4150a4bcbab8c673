// The Network lifecycle against a real API server: the operator runs in this process over
// simulated hypervisors (Hypervisor objects with Nodes, heartbeat Leases and a reported tunnel
// address, no agents). An Instance needs no agent to get an address: the operator allocates at
// binding. The test plays the agent only to let a deleted Instance go.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { execFileSync } from 'node:child_process';
import { apiStatus, Patcher } from '@kova/controller-kit';
import {
  API_VERSION,
  GROUP,
  NETWORK_FINALIZER,
  networkUsable,
  NODE_CLEANUP_FINALIZER,
  PLURAL,
  VERSION,
  type INetwork,
  type InstanceObject,
} from '@kova/crds';
import { kubectlPath, until, type LocalControlPlane, type SimulatedFleet } from '@kova/hack';
import { configFromEnv } from '../config.js';
import {
  runOperator,
  startFleetCluster,
  stopFleetCluster,
  stopOperator,
  type RunningOperator,
} from '../test-support.js';

let cp: LocalControlPlane;
let kc: KubeConfig;
let api: CustomObjectsApi;
let fleet: SimulatedFleet;
let operator: RunningOperator;
const NS = 'nets';

function startOperator(): Promise<RunningOperator> {
  const config = { ...configFromEnv(), vniMin: 7000, heartbeatTimeoutMs: 5000 };
  return runOperator(kc, config, 'network-test');
}

const kova = (plural: string) => ({ group: GROUP, version: VERSION, plural });

async function createNetwork(name: string, spec: Partial<INetwork['spec']>): Promise<void> {
  await api.createClusterCustomObject({
    ...kova(PLURAL.Network),
    body: { apiVersion: API_VERSION, kind: 'Network', metadata: { name }, spec },
  });
}

async function getNetwork(name: string): Promise<INetwork | undefined> {
  return (await api.getClusterCustomObject({ ...kova(PLURAL.Network), name }).catch((err) => {
    if (apiStatus(err) !== 404) throw err;
  })) as INetwork | undefined;
}

const ready = (n: INetwork | undefined) => n?.status?.conditions?.find((c) => c.type === 'Ready');

/** The Network once its Ready condition has the reason (any status). */
const readyWith = (name: string, reason: string) =>
  until(`Network ${name} Ready reason ${reason}`, async () => {
    const n = await getNetwork(name);
    return ready(n)?.reason === reason && (ready(n)?.observedGeneration ?? 0) >= 1 ? n : undefined;
  });

async function createInstance(name: string, network: string, node: string): Promise<void> {
  await api.createNamespacedCustomObject({
    ...kova(PLURAL.Instance),
    namespace: NS,
    body: {
      apiVersion: API_VERSION,
      kind: 'Instance',
      metadata: { name },
      spec: {
        flavor: 'small',
        image: 'guest',
        networks: [{ network }],
        nodeSelector: { 'kubernetes.io/hostname': node },
      },
    },
  });
}

async function getInstance(name: string): Promise<InstanceObject | undefined> {
  return (await api
    .getNamespacedCustomObject({ ...kova(PLURAL.Instance), namespace: NS, name })
    .catch((err) => {
      if (apiStatus(err) !== 404) throw err;
    })) as InstanceObject | undefined;
}

const addressed = (name: string) =>
  until(`${name} to get its address`, async () => {
    const i = await getInstance(name);
    return i?.status?.interfaces?.length ? i : undefined;
  });

/** Deletes the Instance and plays its agent: the domain is gone, the cleanup finalizer goes. */
async function deleteInstance(name: string): Promise<void> {
  await api.deleteNamespacedCustomObject({ ...kova(PLURAL.Instance), namespace: NS, name });
  const ref = {
    apiVersion: API_VERSION,
    kind: 'Instance',
    plural: PLURAL.Instance,
    name,
    namespace: NS,
  };
  for (;;) {
    const fresh = await getInstance(name);
    if (!fresh) return;
    try {
      await new Patcher(kc, 'fake-agent').setFinalizers(
        ref,
        fresh.metadata.resourceVersion as string,
        (fresh.metadata.finalizers ?? []).filter((f) => f !== NODE_CLEANUP_FINALIZER),
      );
      break;
    } catch (err) {
      if (apiStatus(err) !== 409 && apiStatus(err) !== 404) throw err;
    }
  }
  await until(`${name} to be gone`, async () => !(await getInstance(name)));
}

async function warnings(name: string, reason: string) {
  const list = await kc.makeApiClient(CoreV1Api).listEventForAllNamespaces({
    fieldSelector: `involvedObject.kind=Network,involvedObject.name=${name},reason=${reason}`,
  });
  return list.items.filter((e) => e.type === 'Warning');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  ({ cp, kc, api, fleet } = await startFleetCluster(
    ['hv-a', 'hv-b', 'hv-c'].map((name, i) => ({
      name,
      vcpus: 16,
      memoryMiB: 32 * 1024,
      diskGiB: 400,
      ...(i < 2 ? { tunnelAddress: `192.168.77.${i + 1}` } : {}),
    })),
    1000,
  ));
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: NS } } });
  await api.createClusterCustomObject({
    ...kova(PLURAL.Flavor),
    body: {
      apiVersion: API_VERSION,
      kind: 'Flavor',
      metadata: { name: 'small' },
      spec: { vcpus: 1, memoryMiB: 512, rootDiskGiB: 1 },
    },
  });
  await api.createClusterCustomObject({
    ...kova(PLURAL.Image),
    body: {
      apiVersion: API_VERSION,
      kind: 'Image',
      metadata: { name: 'guest' },
      spec: { source: '/var/lib/kova/guest.qcow2', sha256: 'a'.repeat(64) },
    },
  });
  operator = await startOperator();
}, 120_000);

afterAll(async () => {
  await stopOperator(operator);
  await stopFleetCluster({ cp, fleet });
});

describe('VNI', () => {
  it('gives each managed Network the lowest free VNI, distinct, kept across an operator restart', async () => {
    await createNetwork('vni-a', {
      cidr: '10.41.0.0/24',
      gateway: '10.41.0.1',
      bridge: 'br-vni-a',
    });
    await createNetwork('vni-b', {
      cidr: '10.42.0.0/24',
      gateway: '10.42.0.1',
      bridge: 'br-vni-b',
    });
    await createNetwork('plain', {
      cidr: '10.43.0.0/24',
      gateway: '10.43.0.1',
      bridge: 'br-plain',
      managed: false,
    });
    const a = await readyWith('vni-a', 'Ready');
    const b = await readyWith('vni-b', 'Ready');
    const plain = await readyWith('plain', 'Ready');
    for (const n of [a, b, plain]) {
      expect(networkUsable(n)).toBe(true);
      expect(n.status?.observedGeneration).toBe(n.metadata?.generation);
      expect(n.metadata?.finalizers).toContain(NETWORK_FINALIZER);
    }
    expect(plain.status?.vni).toBeUndefined();
    const vnis = [a.status?.vni, b.status?.vni];
    expect(new Set(vnis).size).toBe(2);
    for (const v of vnis) expect(v).toBeGreaterThanOrEqual(7000);

    await stopOperator(operator);
    operator = await startOperator();
    await createNetwork('vni-c', {
      cidr: '10.44.0.0/24',
      gateway: '10.44.0.1',
      bridge: 'br-vni-c',
    });
    const c = await readyWith('vni-c', 'Ready');
    await sleep(1000);
    expect((await getNetwork('vni-a'))?.status?.vni).toBe(a.status?.vni);
    expect((await getNetwork('vni-b'))?.status?.vni).toBe(b.status?.vni);
    expect(vnis).not.toContain(c.status?.vni);
  });
});

describe('usage: allocated, available, holders, nodes with their tunnel endpoints', () => {
  it('follows Instances binding and going and Hypervisors reporting and vanishing', async () => {
    await createNetwork('usage', {
      cidr: '10.45.0.0/24',
      gateway: '10.45.0.1',
      bridge: 'br-usage',
      allocationPools: [{ start: '10.45.0.10', end: '10.45.0.19' }],
    });
    await readyWith('usage', 'Ready');
    await createInstance('u1', 'usage', 'hv-b');
    await createInstance('u2', 'usage', 'hv-a');
    await createInstance('u3', 'usage', 'hv-c');
    for (const n of ['u1', 'u2', 'u3']) await addressed(n);
    const shown = await until('status to show three holders', async () => {
      const n = await getNetwork('usage');
      return n?.status?.allocated === 3 ? n : undefined;
    });
    expect(shown.status).toMatchObject({
      allocated: 3,
      available: 7,
      holders: 3,
      nodes: [
        { name: 'hv-a', tunnelAddress: '192.168.77.1' },
        { name: 'hv-b', tunnelAddress: '192.168.77.2' },
        { name: 'hv-c' },
      ],
    });

    // `kubectl get networks` prints the VNI, readiness and the allocated count.
    const out = execFileSync(
      kubectlPath(),
      ['--kubeconfig', cp.endpoints.kubeconfigPath, 'get', 'networks', 'usage'],
      { encoding: 'utf8' },
    );
    const [header, row] = out
      .trim()
      .split('\n')
      .map((l) => l.trim().split(/\s+/));
    const col = (name: string) => row?.[header?.indexOf(name) ?? -1];
    expect(col('VNI')).toBe(String(shown.status?.vni));
    expect(col('READY')).toBe('True');
    expect(col('ALLOCATED')).toBe('3');

    await fleet.reportTunnelAddress('hv-c', '192.168.77.3');
    await until('hv-c to show its tunnel address', async () => {
      const nodes = (await getNetwork('usage'))?.status?.nodes;
      return nodes?.find((x) => x.name === 'hv-c')?.tunnelAddress === '192.168.77.3';
    });
    await fleet.reportTunnelAddress('hv-a', undefined);
    await until('hv-a to lose its tunnel address', async () => {
      const nodes = (await getNetwork('usage'))?.status?.nodes;
      return (
        nodes?.find((x) => x.name === 'hv-a') &&
        !nodes.find((x) => x.name === 'hv-a')?.tunnelAddress
      );
    });

    await deleteInstance('u1');
    const after = await until('hv-b to leave the nodes', async () => {
      const n = await getNetwork('usage');
      return n?.status?.allocated === 2 ? n : undefined;
    });
    expect(after.status).toMatchObject({
      allocated: 2,
      available: 8,
      holders: 2,
      nodes: [{ name: 'hv-a' }, { name: 'hv-c', tunnelAddress: '192.168.77.3' }],
    });
    await deleteInstance('u2');
    await deleteInstance('u3');
  });
});

describe('deletion waits while Instances hold addresses', () => {
  it('says who holds it, refuses new addresses, and completes once the last Instance is gone', async () => {
    await createNetwork('held', { cidr: '10.46.0.0/24', gateway: '10.46.0.1', bridge: 'br-held' });
    await readyWith('held', 'Ready');
    await createInstance('holder-1', 'held', 'hv-a');
    await createInstance('holder-2', 'held', 'hv-b');
    await addressed('holder-1');
    await addressed('holder-2');
    await api.deleteClusterCustomObject({ ...kova(PLURAL.Network), name: 'held' });
    const inUse = await readyWith('held', 'InUse');
    expect(inUse.metadata?.deletionTimestamp).toBeDefined();
    expect(ready(inUse)?.status).toBe('False');
    expect(ready(inUse)?.message).toContain(`held by 2 Instances: ${NS}/holder-1, ${NS}/holder-2`);
    expect(inUse.status?.holders).toBe(2);
    expect(
      await until('an InUse Warning', async () => (await warnings('held', 'InUse'))[0]),
    ).toBeDefined();

    // No new address on a Network being deleted: the Instance waits, it does not fail.
    await createInstance('latecomer', 'held', 'hv-c');
    const waiting = await until('latecomer to wait for the Network', async () => {
      const i = await getInstance('latecomer');
      const c = i?.status?.conditions?.find((x) => x.type === 'Scheduled');
      return c?.reason === 'NetworkNotReady' ? i : undefined;
    });
    expect(waiting.status?.phase).toBe('Scheduling');
    expect(waiting.status?.conditions?.find((x) => x.type === 'Scheduled')?.message).toContain(
      'Network held is',
    );

    await deleteInstance('holder-1');
    const one = await until('the message to name the one left', async () => {
      const n = await getNetwork('held');
      return ready(n)?.message.includes('held by 1 Instance:') ? n : undefined;
    });
    expect(ready(one)?.message).toContain(`${NS}/holder-2`);
    expect(one.status?.holders).toBe(1);
    await deleteInstance('holder-2');
    await until('the Network to be gone', async () => !(await getNetwork('held')), 30_000);
    // Gone: the waiting Instance now says so.
    const latecomer = await until('latecomer to wait for a missing Network', async () => {
      const i = await getInstance('latecomer');
      const c = i?.status?.conditions?.find((x) => x.type === 'Scheduled');
      return c?.reason === 'NetworkNotFound' ? i : undefined;
    });
    expect(latecomer.status?.phase).toBe('Scheduling');
    await deleteInstance('latecomer');
  });
});

describe('conflicts: the later Network is refused, the first keeps working', () => {
  it('refuses an overlapping CIDR; the later one becomes Ready once the first is deleted', async () => {
    await createNetwork('ovl-first', {
      cidr: '10.50.0.0/16',
      gateway: '10.50.0.1',
      bridge: 'br-ovl-1',
    });
    await readyWith('ovl-first', 'Ready');
    await createNetwork('ovl-later', {
      cidr: '10.50.7.0/24',
      gateway: '10.50.7.1',
      bridge: 'br-ovl-2',
    });
    const refused = await readyWith('ovl-later', 'CIDROverlap');
    expect(ready(refused)?.status).toBe('False');
    expect(ready(refused)?.message).toContain('overlaps Network ovl-first (10.50.0.0/16)');
    expect(refused.status?.vni).toBeUndefined();
    expect(
      await until(
        'a CIDROverlap Warning',
        async () => (await warnings('ovl-later', 'CIDROverlap'))[0],
      ),
    ).toBeDefined();

    // The first keeps working; the later hands out nothing.
    await createInstance('on-first', 'ovl-first', 'hv-a');
    await createInstance('on-later', 'ovl-later', 'hv-a');
    await addressed('on-first');
    await until('on-later to wait with NetworkNotReady', async () => {
      const c = (await getInstance('on-later'))?.status?.conditions?.find(
        (x) => x.type === 'Scheduled',
      );
      return c?.reason === 'NetworkNotReady' && c.message.includes('CIDROverlap');
    });
    expect(ready(await getNetwork('ovl-first'))?.status).toBe('True');

    await deleteInstance('on-first');
    await api.deleteClusterCustomObject({ ...kova(PLURAL.Network), name: 'ovl-first' });
    await until('ovl-first to be gone', async () => !(await getNetwork('ovl-first')));
    const later = await readyWith('ovl-later', 'Ready');
    expect(later.status?.vni).toBeGreaterThanOrEqual(7000);
    const got = await addressed('on-later');
    expect(got.status?.interfaces?.[0]?.ip).toMatch(/^10\.50\.7\./);
    await deleteInstance('on-later');
  });

  it('refuses a bridge another Network already has', async () => {
    await createNetwork('br-first', {
      cidr: '10.51.0.0/24',
      gateway: '10.51.0.1',
      bridge: 'br-same',
    });
    await readyWith('br-first', 'Ready');
    await createNetwork('br-later', {
      cidr: '10.52.0.0/24',
      gateway: '10.52.0.1',
      bridge: 'br-same',
    });
    const refused = await readyWith('br-later', 'BridgeConflict');
    expect(ready(refused)?.message).toContain("bridge br-same is already Network br-first's");
    expect(refused.status?.vni).toBeUndefined();
    expect(networkUsable(refused)).toBe(false);
    expect(networkUsable((await getNetwork('br-first')) as INetwork)).toBe(true);
  });
});
