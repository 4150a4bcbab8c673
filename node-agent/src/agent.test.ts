// The node agent as a process, against its own real API server and the real libvirtd with QEMU
// under TCG, without the operator: the test binds each Instance itself, as the operator would.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { apiStatus, loadKubeConfig, Patcher } from '@kova/controller-kit';
import {
  API_VERSION,
  GROUP,
  NODE_CLEANUP_FINALIZER,
  PLURAL,
  VERSION,
  type IHypervisor,
} from '@kova/crds';
import { applyCrds, LocalControlPlane, until } from '@kova/hack';
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { domainXml } from './domain/xml.js';
import type { Instance } from './instance-reconciler.js';
import { open } from './libvirt/index.js';
import { tapName } from './network/names.js';
import { usableNetworkStatus } from './test-support.js';

const mainJs = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'main.js');
const NODE = 'agent-test-node';
const BRIDGE = 'kovat0';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const kova = (plural: string) => ({ group: GROUP, version: VERSION, plural });
const virsh = (...args: string[]) =>
  execFileSync('virsh', ['-c', 'qemu:///system', ...args], { encoding: 'utf8', stdio: 'pipe' });

let cp: LocalControlPlane;
let kc: KubeConfig;
let api: CustomObjectsApi;
let stateDir: string;
let agent: ChildProcess | undefined;
let ns: string;

function startAgent(): ChildProcess {
  const proc = spawn(process.execPath, [mainJs], {
    env: {
      ...process.env,
      KUBECONFIG: cp.endpoints.kubeconfigPath,
      KOVA_NODE_NAME: NODE,
      KOVA_LIBVIRT_URI: 'qemu:///system',
      KOVA_VIRT_TYPE: 'qemu',
      KOVA_STATE_DIR: stateDir,
      KOVA_HEALTH_PORT: '0',
      KOVA_SHUTDOWN_TIMEOUT_SECONDS: '2',
      KOVA_RESYNC_SECONDS: '3',
      KOVA_ORPHAN_GRACE_SECONDS: '1',
      KOVA_LOG_LEVEL: process.env.KOVA_TEST_AGENT_LOG_LEVEL ?? 'warn',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  agent = proc;
  return proc;
}

async function stopAgent(signal: NodeJS.Signals): Promise<void> {
  const proc = agent;
  if (!proc || proc.exitCode !== null) return;
  await new Promise<void>((r) => {
    proc.once('exit', () => r());
    proc.kill(signal);
  });
}

const get = async (name: string) =>
  (await api
    .getNamespacedCustomObject({ ...kova('instances'), namespace: ns, name })
    .catch(() => undefined)) as Instance | undefined;

const instanceRef = (name: string) => ({
  apiVersion: API_VERSION,
  kind: 'Instance',
  plural: 'instances',
  name,
  namespace: ns,
});

/**
 * Creates an Instance and binds it to this node with an address, as the operator would; `given`
 * names another Flavor and adds the record the operator's bind writes (status.flavor, .image).
 */
async function createBound(
  name: string,
  ip: string,
  runStrategy = 'Always',
  given: { flavor?: string; record?: Record<string, unknown> } = {},
): Promise<Instance> {
  const created = (await api.createNamespacedCustomObject({
    ...kova('instances'),
    namespace: ns,
    body: {
      apiVersion: API_VERSION,
      kind: 'Instance',
      metadata: { name, finalizers: [NODE_CLEANUP_FINALIZER] },
      spec: {
        flavor: given.flavor ?? 'nano',
        image: 'blank',
        networks: [{ network: 'testnet' }],
        runStrategy,
      },
    },
  })) as Instance;
  const mac = `fa:16:3e:7b:00:${Number(ip.split('.')[3]).toString(16).padStart(2, '0')}`;
  await new Patcher(kc, 'kova-operator').mergeStatus(
    instanceRef(name),
    created.metadata.resourceVersion as string,
    {
      phase: 'Networking',
      nodeName: NODE,
      interfaces: [{ network: 'testnet', ip, mac, gateway: '10.123.0.1', prefix: 24 }],
      ...given.record,
    },
  );
  return created;
}

/** Creates a bound Instance and waits for the agent to bring it to Active. */
async function activeVm(name: string, ip: string, runStrategy = 'Always'): Promise<Instance> {
  const vm = await createBound(name, ip, runStrategy);
  await until(`${name} Active`, async () => (await get(name))?.status?.phase === 'Active', 90_000);
  return vm;
}

const patchRunStrategy = (name: string, value: string) =>
  api.patchNamespacedCustomObject({
    ...kova('instances'),
    namespace: ns,
    name,
    body: [{ op: 'replace', path: '/spec/runStrategy', value }],
  });

const qemuPid = (uid: string) => {
  try {
    return execFileSync('pgrep', ['-f', `qemu-system-x86_64.*${uid}`], { encoding: 'utf8' })
      .trim()
      .split('\n')[0];
  } catch {
    return undefined;
  }
};

beforeAll(async () => {
  cp = await LocalControlPlane.start();
  kc = loadKubeConfig(cp.endpoints.kubeconfigPath);
  api = kc.makeApiClient(CustomObjectsApi);
  await applyCrds(cp.endpoints.kubeconfigPath);
  stateDir = mkdtempSync(join(tmpdir(), 'kova-agent-state-'));
  chmodSync(stateDir, 0o755); // QEMU runs as libvirt-qemu and must reach the disks
  const base = join(stateDir, 'blank-source.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', base, '64M']);
  const sha256 = createHash('sha256').update(readFileSync(base)).digest('hex');
  const create = (kind: string, body: object) =>
    api.createClusterCustomObject({
      ...kova(PLURAL[kind as keyof typeof PLURAL]),
      body: { apiVersion: API_VERSION, kind, ...body },
    });
  await create('Flavor', {
    metadata: { name: 'nano' },
    spec: { vcpus: 1, memoryMiB: 128, rootDiskGiB: 1 },
  });
  await create('Image', { metadata: { name: 'blank' }, spec: { source: base, sha256 } });
  const testnet = (await create('Network', {
    metadata: { name: 'testnet' },
    spec: { cidr: '10.123.0.0/24', gateway: '10.123.0.1', bridge: BRIDGE },
  })) as { metadata: { resourceVersion: string } };
  // Play the operator's Network controller: checked, Ready, given its VNI (networkUsable).
  await new Patcher(kc, 'kova-operator').mergeStatus(
    { apiVersion: API_VERSION, kind: 'Network', plural: PLURAL.Network, name: 'testnet' },
    testnet.metadata.resourceVersion,
    usableNetworkStatus(4242),
  );
  ns = 'agent-test';
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: ns } } });
  await kc
    .makeApiClient(CoreV1Api)
    .createNamespace({ body: { metadata: { name: 'kova-system' } } });
  startAgent();
}, 120_000);

afterAll(async () => {
  await stopAgent('SIGTERM');
  const quietly = (fn: () => unknown) => {
    try {
      fn();
    } catch {
      // already gone
    }
  };
  for (const uuid of virsh('list', '--all', '--uuid').split('\n').filter(Boolean)) {
    if (!virsh('dumpxml', uuid).includes(`node="${NODE}"`)) continue;
    quietly(() => virsh('destroy', uuid));
    quietly(() => virsh('undefine', uuid));
  }
  quietly(() => execFileSync('ip', ['link', 'delete', 'dev', BRIDGE]));
  rmSync(stateDir, { recursive: true, force: true });
  await cp.stop();
});

describe('node agent with real QEMU', () => {
  it('registers its Hypervisor with capacity and versions, and renews a heartbeat Lease', async () => {
    const hv = await until('the Hypervisor status', async () => {
      const h = (await api
        .getClusterCustomObject({ ...kova('hypervisors'), name: NODE })
        .catch(() => undefined)) as IHypervisor | undefined;
      return h?.status?.capacity ? h : undefined;
    });
    expect(hv.status?.hypervisorType).toBe('qemu');
    expect(hv.status?.hypervisorTypeProbe).toEqual({
      probe: 'Configured',
      reason: 'KOVA_VIRT_TYPE',
    });
    expect(hv.status?.capacity?.vcpus).toBeGreaterThan(0);
    expect(hv.status?.qemuVersion).toMatch(/^\d+\.\d+\.\d+$/);
    const { CoordinationV1Api } = await import('@kubernetes/client-node');
    const leases = kc.makeApiClient(CoordinationV1Api);
    const lease = await until('the heartbeat Lease', () =>
      leases.readNamespacedLease({ name: NODE, namespace: 'kova-system' }).catch(() => undefined),
    );
    expect(lease.spec?.holderIdentity).toBe(NODE);
    const renewed = new Date(lease.spec?.renewTime as unknown as string).getTime();
    expect(Date.now() - renewed).toBeLessThan(15_000);
  });

  it('brings a bound Instance to Active with a running QEMU process, its disks and its tap', async () => {
    const vm = await createBound('vm1', '10.123.0.10');
    const active = await until(
      'phase Active',
      async () => {
        const i = await get('vm1');
        return i?.status?.phase === 'Active' ? i : undefined;
      },
      90_000,
    );
    expect(active.status?.powerState).toBe('Running');
    expect(active.status?.domainUUID).toBe(vm.metadata.uid);
    expect(active.status?.launchedAt).toBeDefined();
    for (const type of ['NetworkReady', 'BlockDevicesReady', 'Spawned', 'Ready']) {
      expect(active.status?.conditions?.find((c) => c.type === type)?.status).toBe('True');
    }
    expect(qemuPid(vm.metadata.uid)).toBeDefined();
    const dir = join(stateDir, 'instances', vm.metadata.uid);
    for (const f of ['root.qcow2', 'cidata.iso']) expect(existsSync(join(dir, f))).toBe(true);
    expect(
      execFileSync('qemu-img', ['info', '-U', join(dir, 'root.qcow2')], { encoding: 'utf8' }),
    ).toMatch(/backing file: .*images\/[0-9a-f]{64}\.img/);
    expect(
      execFileSync('ip', ['-o', 'link', 'show', 'master', BRIDGE], { encoding: 'utf8' }),
    ).toContain(tapName(vm.metadata.uid, 0));
  });

  it('sees virsh destroy in powerState within 2 s and restarts the domain under runStrategy Always', async () => {
    const vm = await activeVm('vm-restart', '10.123.0.12');
    const before = qemuPid(vm.metadata.uid);
    // virsh destroy returns once QEMU is gone (it waits up to ~2 s for QEMU to exit): the clock
    // starts when the domain has stopped.
    virsh('destroy', vm.metadata.uid);
    const destroyedAt = Date.now();
    await until(
      'powerState Shutdown',
      async () => (await get('vm-restart'))?.status?.powerState === 'Shutdown',
      2000,
      20,
    );
    expect(Date.now() - destroyedAt).toBeLessThan(2000);
    const running = await until(
      'running again',
      async () => {
        const i = await get('vm-restart');
        return i?.status?.powerState === 'Running' && i.status.phase === 'Active' ? i : undefined;
      },
      30_000,
    );
    const after = qemuPid(vm.metadata.uid);
    expect(after).toBeDefined();
    expect(after).not.toBe(before);
    expect(running.status?.restartBackoff?.count).toBe(1);
  });

  it('adopts the running domain after kill -9 and a restart: the QEMU pid does not change', async () => {
    const vm = await activeVm('vm-adopt', '10.123.0.13');
    const pid = qemuPid(vm.metadata.uid);
    expect(pid).toBeDefined();
    await stopAgent('SIGKILL');
    startAgent();
    await sleep(5000); // a resync period and more
    expect(qemuPid(vm.metadata.uid)).toBe(pid);
    expect((await get('vm-adopt'))?.status?.phase).toBe('Active');
  });

  it('#4 shuts the domain down under Halted, and kubectl wait --for=condition=Ready returns after Halted → Always', async () => {
    const vm = await activeVm('vm-halt', '10.123.0.14');
    await patchRunStrategy('vm-halt', 'Halted');
    await until(
      'phase Stopped',
      async () => {
        const s = (await get('vm-halt'))?.status;
        return s?.phase === 'Stopped' && s.powerState === 'Shutdown';
      },
      30_000,
    );
    expect(qemuPid(vm.metadata.uid)).toBeUndefined();
    await patchRunStrategy('vm-halt', 'Always');
    const waited = await promisify(execFile)(
      'kubectl',
      [
        '--kubeconfig',
        cp.endpoints.kubeconfigPath,
        '-n',
        ns,
        'wait',
        '--for=condition=Ready',
        '--timeout=60s',
        'inst/vm-halt',
      ],
      { encoding: 'utf8' },
    );
    expect(waited.stdout).toContain('condition met');
    const i = (await get('vm-halt')) as Instance;
    const ready = i.status?.conditions?.find((c) => c.type === 'Ready');
    expect(ready?.observedGeneration).toBe(i.metadata.generation);
    expect(qemuPid(vm.metadata.uid)).toBeDefined();
  });

  it('#12.7 respawns a domain whose definition vanished around the same root disk', async () => {
    const vm = await activeVm('vm-respawn', '10.123.0.15');
    const rootDisk = join(stateDir, 'instances', vm.metadata.uid, 'root.qcow2');
    const inode = statSync(rootDisk).ino;
    virsh('destroy', vm.metadata.uid);
    virsh('undefine', vm.metadata.uid);
    await until(
      'redefined and running',
      () => {
        try {
          return virsh('domstate', vm.metadata.uid).includes('running');
        } catch {
          return false;
        }
      },
      30_000,
    );
    expect(statSync(rootDisk).ino).toBe(inode);
    const i = (await get('vm-respawn')) as Instance;
    expect(i.status?.fault).toBeUndefined();
    expect(i.status?.phase).toBe('Active');
  });

  it('#12.12 removes the domain, its disks and its tap on delete, then lets the Instance go', async () => {
    const vm = await activeVm('vm-del', '10.123.0.16');
    await api.deleteNamespacedCustomObject({ ...kova('instances'), namespace: ns, name: 'vm-del' });
    await until('the Instance to be gone', async () => !(await get('vm-del')), 30_000);
    expect(() => virsh('dominfo', vm.metadata.uid)).toThrow();
    expect(existsSync(join(stateDir, 'instances', vm.metadata.uid))).toBe(false);
    expect(
      execFileSync('ip', ['-o', 'link', 'show', 'master', BRIDGE], { encoding: 'utf8' }),
    ).not.toContain(tapName(vm.metadata.uid, 0));
  });

  it('collects a kova domain whose Instance does not exist', async () => {
    const uid = randomUUID();
    const conn = await open('qemu:///system');
    try {
      const xml = domainXml({
        uid,
        namespace: ns,
        name: 'ghost',
        node: NODE,
        virtType: 'qemu',
        vcpus: 1,
        memoryMiB: 64,
        disks: { root: join(stateDir, 'blank-source.qcow2') },
        configDrive: join(stateDir, 'blank-source.qcow2'),
        nics: [],
        consoleLog: join(stateDir, 'ghost.log'),
        consoleSocket: join(stateDir, 'ghost.sock'),
      });
      await conn.defineXML(xml);
      const lookup = () =>
        conn.lookupByUUID(uid).then(
          () => 'defined',
          (err: { code?: number }) => (err.code === 42 ? 'gone' : `error ${err.code}`),
        );
      expect(await lookup()).toBe('defined');
      await until(
        'the orphan to be collected',
        async () => (await lookup()) === 'gone',
        30_000,
        250,
      );
      expect(await lookup()).toBe('gone');
    } finally {
      await conn.close();
    }
  });

  it('reports a fault with a reason when a build step fails after the disks exist, and undoes the build', async () => {
    // The kernel of a direct-boot Image is fetched when the domain is defined, after the disks
    // were made from the (good) base: the undo must remove them.
    const base = join(stateDir, 'blank-source.qcow2');
    await api.createClusterCustomObject({
      ...kova('images'),
      body: {
        apiVersion: API_VERSION,
        kind: 'Image',
        metadata: { name: 'no-kernel' },
        spec: {
          source: base,
          sha256: createHash('sha256').update(readFileSync(base)).digest('hex'),
          kernel: { source: join(stateDir, 'nope.vmlinuz'), sha256: 'c'.repeat(64) },
        },
      },
    });
    const created = (await api.createNamespacedCustomObject({
      ...kova('instances'),
      namespace: ns,
      body: {
        apiVersion: API_VERSION,
        kind: 'Instance',
        metadata: { name: 'vm-bad', finalizers: [NODE_CLEANUP_FINALIZER] },
        spec: { flavor: 'nano', image: 'no-kernel', networks: [{ network: 'testnet' }] },
      },
    })) as Instance;
    await new Patcher(kc, 'kova-operator').mergeStatus(
      instanceRef('vm-bad'),
      created.metadata.resourceVersion as string,
      {
        phase: 'Networking',
        nodeName: NODE,
        interfaces: [
          {
            network: 'testnet',
            ip: '10.123.0.11',
            mac: 'fa:16:3e:7b:00:0b',
            gateway: '10.123.0.1',
            prefix: 24,
          },
        ],
      },
    );
    const status = await until(
      'a fault',
      async () => {
        const s = (await get('vm-bad'))?.status;
        return s?.fault ? s : undefined;
      },
      30_000,
    );
    expect(status.fault?.reason).toBe('ImageDownloadFailed');
    expect(status.fault?.retryable).toBe(true);
    expect(status.fault?.node).toBe(NODE);
    const cond = (t: string) => status.conditions?.find((c) => c.type === t);
    expect(cond('BlockDevicesReady')?.status).toBe('True'); // the disks had been made
    expect(cond('Spawned')).toMatchObject({ status: 'False', reason: 'ImageDownloadFailed' });
    expect(existsSync(join(stateDir, 'instances', created.metadata.uid))).toBe(false);
    expect(() => virsh('dominfo', created.metadata.uid)).toThrow();
    await api
      .deleteNamespacedCustomObject({ ...kova('instances'), namespace: ns, name: 'vm-bad' })
      .catch((err) => {
        if (apiStatus(err) !== 404) throw err;
      });
  });

  it('#13.5 builds and reports from the sizes recorded at binding when the Flavor is gone', async () => {
    const image = (await api.getClusterCustomObject({ ...kova('images'), name: 'blank' })) as {
      spec: { sha256: string };
    };
    // Bound with Flavor "retired" (2 vCPUs, 192 MiB, 64 MiB swap), deleted since: none exists.
    const flavor = { name: 'retired', vcpus: 2, memoryMiB: 192, rootDiskGiB: 1, swapMiB: 64 };
    const record = {
      flavor,
      image: { name: 'blank', sha256: image.spec.sha256, format: 'qcow2' },
    };
    const vm = await createBound('vm-given', '10.123.0.19', 'Always', {
      flavor: 'retired',
      record,
    });
    await until('vm-given Active', async () => (await get('vm-given'))?.status?.phase === 'Active');
    const info = virsh('dominfo', vm.metadata.uid);
    expect(info).toMatch(/CPU\(s\):\s+2\n/);
    expect(info).toMatch(/Max memory:\s+196608 KiB/);
    const dir = join(stateDir, 'instances', vm.metadata.uid);
    expect(existsSync(join(dir, 'swap.qcow2'))).toBe(true);
    // The Hypervisor's allocated counts it with the recorded sizes, the others with nano's.
    const here = async () =>
      (
        (await api.listNamespacedCustomObject({ ...kova('instances'), namespace: ns })) as {
          items: Instance[];
        }
      ).items.filter((i) => i.status?.nodeName === NODE);
    await until('allocated to count the record', async () => {
      const expected = (await here()).reduce((n, i) => n + (i.status?.flavor?.vcpus ?? 1), 0);
      const hv = (await api.getClusterCustomObject({
        ...kova('hypervisors'),
        name: NODE,
      })) as IHypervisor;
      return hv.status?.allocated?.vcpus === expected;
    });
  });
});
