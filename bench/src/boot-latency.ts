// Boot latency, kova against the raw limit, in one run on this machine:
//  - kova: N Instances, one after another, through the whole local stack (API server, operator,
//    node agent, libvirt, QEMU TCG); creation → Active measured by the client (create call to
//    the first watch event showing Active, as `kubectl wait` sees it), phases from the
//    conditions' transition times;
//  - raw: the same disk preparation (qcow2 overlay, config drive) and the same domain XML,
//    done directly with qemu-img, genisoimage and libvirt, until the domain runs.
import { CustomObjectsApi } from '@kubernetes/client-node';
import { Informer, loadKubeConfig, logger } from '@kova/controller-kit';
import { API_VERSION, GROUP, VERSION, type IInstance } from '@kova/crds';
import { LocalKova, until } from '@kova/hack';
import {
  buildConfigDrive,
  createDisks,
  DEFAULT_MTU,
  domainXml,
  DomainState,
  open,
  removeInstanceFiles,
  StatePaths,
  tapName,
} from '@kova/node-agent';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeChart, writeResult } from './results.js';
import { cdf, latencyChart } from './svg.js';
import { ms, quantile } from './stats.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const samples = Number(process.env.BENCH_SAMPLES ?? 20);
const log = logger('bench');
const RAW_BRIDGE = 'kvbenchraw0';
const PHASES: [string, string][] = [
  ['Scheduling', 'Scheduled'],
  ['Networking', 'NetworkReady'],
  ['BlockDeviceMapping', 'BlockDevicesReady'],
  ['Spawning', 'Spawned'],
];

async function kovaSamples(
  kova: LocalKova,
): Promise<{ total: number[]; phases: Record<string, number[]> }> {
  const kc = loadKubeConfig(kova.kubeconfigPath);
  const api = kc.makeApiClient(CustomObjectsApi);
  const active = activeWatch(kc);
  await active.start();
  const ref = (name: string) => ({
    group: GROUP,
    version: VERSION,
    plural: 'instances',
    namespace: 'default',
    name,
  });
  const total: number[] = [];
  const phases: Record<string, number[]> = Object.fromEntries(PHASES.map(([p]) => [p, []]));
  for (let i = 0; i <= samples; i++) {
    const name = `bench-${i}`;
    const body = {
      apiVersion: API_VERSION,
      kind: 'Instance',
      metadata: { name },
      spec: { flavor: 'm1.nano', image: 'kova-guest', networks: [{ network: 'default' }] },
    };
    const seen = active.next(name);
    const t0 = Date.now();
    await api.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: 'instances',
      namespace: 'default',
      body,
    });
    const inst = await seen;
    const t1 = Date.now();
    if (i > 0) {
      // the first boot warms the image cache and the hypervisor registration
      total.push(t1 - t0);
      let from = t0;
      for (const [phase, type] of PHASES) {
        const at = Date.parse(
          inst.status?.conditions?.find((c) => c.type === type && c.status === 'True')
            ?.lastTransitionTime ?? '',
        );
        phases[phase]!.push(Math.max(0, at - from));
        from = at;
      }
    }
    await api.deleteNamespacedCustomObject(ref(name));
    await until(
      `${name} deleted`,
      () =>
        api.getNamespacedCustomObject(ref(name)).then(
          () => false,
          () => true,
        ),
      60_000,
      50,
    );
  }
  await active.stop();
  return { total, phases };
}

/** A watch on the Instances: `next(name)` resolves with the first event showing it Active. */
function activeWatch(kc: ReturnType<typeof loadKubeConfig>) {
  const watch = new Informer<IInstance>(
    kc,
    { apiVersion: API_VERSION, kind: 'Instance', plural: 'instances', namespace: 'default' },
    { logger: log },
  );
  const waiting = new Map<
    string,
    { resolve: (i: IInstance) => void; reject: (e: Error) => void }
  >();
  watch.on((inst) => {
    const name = inst.metadata?.name as string;
    const w = waiting.get(name);
    const fault = inst.status?.fault;
    if (!w || (!fault && inst.status?.phase !== 'Active')) return;
    waiting.delete(name);
    if (fault) w.reject(new Error(`${name}: ${fault.reason}: ${fault.message}`));
    else w.resolve(inst);
  });
  return {
    start: () => watch.start(),
    stop: () => watch.stop(),
    next: (name: string) =>
      new Promise<IInstance>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${name} not Active in 120 s`)), 120_000);
        const done =
          <T>(f: (v: T) => void) =>
          (v: T) => (clearTimeout(timer), f(v));
        waiting.set(name, { resolve: done(resolve), reject: done(reject) });
      }),
  };
}

/** The same work without Kubernetes: overlay, config drive, define, start, until running. */
async function rawSamples(kova: LocalKova): Promise<number[]> {
  const conn = await open('qemu:///system');
  // A state dir of its own (the agent's garbage collector owns kova's), readable by QEMU's user.
  const dir = mkdtempSync(join(tmpdir(), 'kova-bench-raw-'));
  chmodSync(dir, 0o755);
  const paths = new StatePaths(dir);
  const local = (f: string) => {
    const to = join(dir, f);
    copyFileSync(join(kova.guestDir, f), to);
    return to;
  };
  const [base, kernel, initrd] = ['root.qcow2', 'vmlinuz', 'initrd.img'].map(local) as [
    string,
    string,
    string,
  ];
  // A bridge of its own, unmarked: the running agent removes kova-marked bridges no guest uses.
  execFileSync('ip', ['link', 'add', 'name', RAW_BRIDGE, 'type', 'bridge']);
  execFileSync('ip', ['link', 'set', 'dev', RAW_BRIDGE, 'up']);
  const out: number[] = [];
  try {
    for (let i = 0; i <= samples; i++) {
      const uid = randomUUID();
      const ip = `10.77.0.${200 + (i % 50)}`;
      const iface = {
        network: 'default',
        ip,
        mac: `fa:16:3e:4d:00:${(200 + (i % 50)).toString(16)}`,
        gateway: '10.77.0.1',
        prefix: 24,
      };
      const t0 = Date.now();
      const disks = await createDisks(paths, uid, base, 'qcow2', {
        vcpus: 1,
        memoryMiB: 128,
        rootDiskGiB: 1,
      });
      const cidata = paths.instanceFile(uid, 'cidata.iso');
      await buildConfigDrive(cidata, {
        instanceId: uid,
        hostname: `raw-${i}`,
        sshAuthorizedKeys: [],
        interfaces: [iface],
        dns: [],
      });
      const xml = domainXml({
        uid,
        namespace: 'default',
        name: `raw-${i}`,
        node: 'bench',
        virtType: 'qemu',
        vcpus: 1,
        memoryMiB: 128,
        disks,
        configDrive: cidata,
        nics: [{ ...iface, bridge: RAW_BRIDGE, tap: tapName(uid, 0), mtu: DEFAULT_MTU }],
        consoleLog: paths.instanceFile(uid, 'console.log'),
        consoleSocket: paths.instanceFile(uid, 'console.sock'),
        kernel: { path: kernel, initrd, cmdline: 'console=ttyS0 quiet panic=-1' },
      });
      const dom = await conn.defineXML(xml);
      try {
        await dom.create();
        await until(
          'running',
          async () => (await dom.getState()).state === DomainState.RUNNING,
          60_000,
          5,
        );
        if (i > 0) out.push(Date.now() - t0);
        await dom.destroy();
      } finally {
        await dom.undefine();
        await removeInstanceFiles(paths, uid);
      }
    }
  } finally {
    await conn.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}

async function main(): Promise<void> {
  const kova = await LocalKova.start({ log, agentEnv: { KOVA_SHUTDOWN_TIMEOUT_SECONDS: '0' } });
  try {
    await kova.apply(join(root, 'examples', 'flavors.yaml'));
    await kova.apply(join(root, 'examples', 'network.yaml'));
    const k = await kovaSamples(kova);
    const raw = await rawSamples(kova);
    const pct = (v: number[]) => `${ms(quantile(v, 0.5))} / ${ms(quantile(v, 0.95))}`;
    const ratio = quantile(k.total, 0.5) / quantile(raw, 0.5);
    writeChart(
      'boot-latency',
      latencyChart(`Boot: creation → Active, ${samples} sequential (TCG)`, 'milliseconds', [
        { name: `kova (p50 ${ms(quantile(k.total, 0.5))})`, points: cdf(k.total) },
        {
          name: `raw libvirt + qemu-img + genisoimage (p50 ${ms(quantile(raw, 0.5))})`,
          points: cdf(raw),
        },
      ]),
    );
    writeResult(
      'boot-latency',
      [
        {
          measure: `boot: kova creation → Active p50 / p95 (${samples} sequential, TCG)`,
          value: pct(k.total),
          goal: 'p50 ≤ 1 s',
        },
        ...PHASES.map(([p]) => ({
          measure: `boot:   phase ${p} p50 / p95`,
          value: pct(k.phases[p] as number[]),
        })),
        { measure: 'boot: raw libvirt + qemu-img + genisoimage p50 / p95', value: pct(raw) },
        { measure: 'boot: kova / raw (p50)', value: ratio.toFixed(2), goal: '≤ 1.10' },
      ],
      {
        samples,
        kova: { creationToActiveMs: k.total, phaseMs: k.phases },
        raw: { prepareAndStartMs: raw },
      },
    );
  } finally {
    await kova.stop();
    // The raw samples' bridge; absent when the run failed before making it.
    if (existsSync(`/sys/class/net/${RAW_BRIDGE}`))
      execFileSync('ip', ['link', 'delete', 'dev', RAW_BRIDGE], { stdio: 'ignore' });
  }
}

await main();
