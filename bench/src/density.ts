// KubeVirt's density test, kova's way: N Instances created one every 100 ms, creation → Active
// per Instance (create call → the watch shows phase Active), p50/p95/p99. `density.js test`
// runs against an agent on libvirt's test driver (no guests: the control plane, operator and
// agent alone); `density.js qemu` against real QEMU guests under TCG, with the footprint: the
// agent's memory before and with 30 guests running, and QEMU's own memory per guest.
import { CustomObjectsApi } from '@kubernetes/client-node';
import { Informer, loadKubeConfig, logger } from '@kova/controller-kit';
import { API_VERSION, GROUP, VERSION, type IHypervisor, type IInstance } from '@kova/crds';
import { LocalKova, until } from '@kova/hack';
import { execFileSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pidsOf, rssMiB } from './proc.js';
import { writeChart, writeResult, type Row } from './results.js';
import { cdf, latencyChart } from './svg.js';
import { ms, quantile } from './stats.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const mode = process.argv[2] === 'qemu' ? 'qemu' : 'test';
const COUNT = Number(process.env.BENCH_DENSITY_COUNT ?? 100);
const INTERVAL_MS = 100;
const FOOTPRINT_AT = 30;
const log = logger(`bench-density-${mode}`);
type Inst = IInstance & { metadata: { name: string } };

async function main(): Promise<void> {
  const node = `density-${mode}`;
  const kova = await LocalKova.start({
    log,
    agents: [{ node, env: mode === 'test' ? { KOVA_LIBVIRT_URI: 'test:///default' } : {} }],
    agentEnv: { KOVA_SHUTDOWN_TIMEOUT_SECONDS: '0', KOVA_LOG_LEVEL: 'error' },
  });
  try {
    const kc = loadKubeConfig(kova.kubeconfigPath);
    const api = kc.makeApiClient(CustomObjectsApi);
    for (const f of ['flavors.yaml', 'network.yaml']) await kova.apply(join(root, 'examples', f));
    const hv = { group: GROUP, version: VERSION, plural: 'hypervisors', name: node };
    await until(
      'the hypervisor to report',
      async () =>
        ((await api.getClusterCustomObject(hv).catch(() => undefined)) as IHypervisor | undefined)
          ?.status?.capacity,
    );
    // Room for every guest (libvirt's test driver reports a small host; m1.nano guests are small).
    await api.patchClusterCustomObject({
      ...hv,
      body: [
        { op: 'add', path: '/spec', value: { ramAllocationRatio: 8, cpuAllocationRatio: 64 } },
      ],
    });
    const agentPid = pidsOf('node', join('node-agent', 'dist', 'main.js'))[0] as number;
    const agentIdle = rssMiB(agentPid);
    let agentAt30 = NaN;

    const sentAt = new Map<string, number>();
    const activeAt = new Map<string, number>();
    const watch = new Informer<Inst>(
      kc,
      { apiVersion: API_VERSION, kind: 'Instance', plural: 'instances', namespace: 'default' },
      { logger: log },
    );
    watch.on((inst) => {
      if (inst.status?.phase !== 'Active' || activeAt.has(inst.metadata.name)) return;
      activeAt.set(inst.metadata.name, performance.now());
      if (activeAt.size === FOOTPRINT_AT) agentAt30 = rssMiB(agentPid);
    });
    await watch.start();
    const names = Array.from({ length: COUNT }, (_, i) => `d-${i}`);
    const start = performance.now();
    await Promise.all(
      names.map(async (name, i) => {
        await new Promise((r) => setTimeout(r, start + i * INTERVAL_MS - performance.now()));
        sentAt.set(name, performance.now());
        await api.createNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          plural: 'instances',
          namespace: 'default',
          body: {
            apiVersion: API_VERSION,
            kind: 'Instance',
            metadata: { name },
            spec: { flavor: 'm1.nano', image: 'kova-guest', networks: [{ network: 'default' }] },
          },
        });
      }),
    );
    await until(`${COUNT} Instances Active`, () => activeAt.size === COUNT, 900_000, 200);
    const latency = names.map((n) => (activeAt.get(n) as number) - (sentAt.get(n) as number));
    const qemuRss =
      mode === 'qemu' ? pidsOf('qemu-system-x86', 'guest=kova-default_d-').map(rssMiB) : [];
    await watch.stop();

    const pct = `${ms(quantile(latency, 0.5))} / ${ms(quantile(latency, 0.95))} / ${ms(quantile(latency, 0.99))}`;
    const label = mode === 'test' ? "libvirt's test driver" : 'QEMU TCG guests';
    const rows: Row[] = [
      {
        measure: `density (${label}): ${COUNT} at 100 ms, creation → Active p50 / p95 / p99`,
        value: pct,
        goal: 'p95 ≤ 2 s',
      },
    ];
    if (mode === 'qemu') {
      rows.push(
        {
          measure: 'footprint: agent RSS idle / with 30 guests running',
          value: `${agentIdle.toFixed(0)} / ${agentAt30.toFixed(0)} MiB`,
        },
        {
          measure: 'footprint: kova per guest beyond QEMU (processes; agent MiB)',
          value: `0; ${((agentAt30 - agentIdle) / FOOTPRINT_AT).toFixed(2)} MiB`,
        },
        {
          measure: 'footprint: QEMU RSS per m1.nano guest (p50)',
          value: `${quantile(qemuRss, 0.5).toFixed(0)} MiB`,
        },
      );
    }
    writeChart(
      `density-${mode}`,
      latencyChart(
        `Density (${mode === 'qemu' ? 'QEMU TCG' : 'libvirt test driver'}): ${COUNT} Instances, one every ${INTERVAL_MS} ms`,
        'creation → Active, milliseconds',
        [{ name: `kova (p50 ${ms(quantile(latency, 0.5))})`, points: cdf(latency) }],
      ),
    );
    writeResult(`density-${mode}`, rows, {
      count: COUNT,
      intervalMs: INTERVAL_MS,
      creationToActiveMs: latency,
      agentRssMiB: { idle: agentIdle, at30: agentAt30 },
      qemuRssMiB: qemuRss,
    });
    for (const name of names)
      await api.deleteNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        plural: 'instances',
        namespace: 'default',
        name,
      });
    await until(
      'every Instance deleted',
      async () =>
        (
          (await api.listNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            plural: 'instances',
            namespace: 'default',
          })) as { items: unknown[] }
        ).items.length === 0,
      600_000,
      500,
    );
  } finally {
    await kova.stop();
    execFileSync('ip', ['link', 'delete', 'dev', 'kova-br0'], { stdio: 'ignore' });
  }
}

main().catch((err: Error) => {
  log.error('benchmark failed', { error: err });
  process.exit(1);
});
