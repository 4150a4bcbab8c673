// Scheduler throughput at 1,000 hosts, kova side by side with kube-scheduler on one local
// control plane in one run. First kube-scheduler (same pinned Kubernetes version), twice — with
// its default client limits and unthrottled — binds N pods requesting an m1.nano's CPU, memory
// and disk onto 1,000 Ready Node objects sized like the hypervisors (no kubelets); those Nodes
// and pods are then deleted. Then kova: simulated hypervisors (Node, Hypervisor with capacity,
// heartbeat Lease), the real operator process, N Instances created at once. Measured for each:
// bindings per second (first to last bind seen by a watch), time to bind (create call → watch
// shows the object bound), API writes per binding (the API server's apiserver_request_total),
// CPU per process; for kova also the scheduler's compute per decision, its own write counts
// (its /metrics) and its memory. Verified afterwards: no hypervisor over its allocation ratio,
// no duplicate IP or MAC. Writes bench/results/scheduler-throughput.{json,svg}.
import { CustomObjectsApi } from '@kubernetes/client-node';
import { Informer, loadKubeConfig, logger } from '@kova/controller-kit';
import { API_VERSION, GROUP, VERSION, type IHypervisor, type IInstance } from '@kova/crds';
import {
  applyCrds,
  applyFile,
  freePort,
  LocalControlPlane,
  SimulatedFleet,
  until,
} from '@kova/hack';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpus } from 'node:os';
import { selectHost, type HostState, type RequestSpec } from '@kova/operator';
import {
  bindingsPerSecond,
  createNodes,
  deleteNodes,
  kubeSchedulerRun,
  measureBinds,
  writesPerBinding,
  type BindRun,
} from './kube-scheduler.js';
import { pidsOf } from './proc.js';
import { scrape, total } from './prometheus.js';
import { ms, quantile } from './stats.js';
import { writeChart, writeResult, type Grid, type Row } from './results.js';
import { lineChart } from './svg.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const HOSTS = Number(process.env.BENCH_HOSTS ?? 1000);
const INSTANCES = Number(process.env.BENCH_INSTANCES ?? 5000);
const CREATE_CONCURRENCY = 100;
// BENCH_KUBE_SCHEDULER=0 leaves kube-scheduler out (kova alone).
const KUBE_SCHEDULER = process.env.BENCH_KUBE_SCHEDULER !== '0';
const log = logger('bench-scheduler');
// 4 cores × 4.0 = 16 vCPUs and (1,536 − 512 reserved) MiB: 8 m1.nano per host, 8,000 in all.
const HOST = { vcpus: 4, memoryMiB: 1536, diskGiB: 100 };
// The same room as a Node's allocatable for kube-scheduler, and an m1.nano as a pod's requests.
const NODE = { cpu: HOST.vcpus * 4, memoryMiB: HOST.memoryMiB - 512, diskGiB: HOST.diskGiB };
const M1_NANO = { cpu: 1, memoryMiB: 128, diskGiB: 1 };
type Inst = IInstance & { metadata: { name: string; uid: string } };

async function main(): Promise<void> {
  const cp = await LocalControlPlane.start({ log: (m, f) => log.debug(m, f) });
  const kc = loadKubeConfig(cp.endpoints.kubeconfigPath);
  // kube-scheduler first, on Nodes of its own, before the operator or any hypervisor exists;
  // its Nodes are deleted again before kova's run.
  const peers: BindRun[] = [];
  if (KUBE_SCHEDULER) {
    try {
      const t0 = Date.now();
      await createNodes(kc, HOSTS, NODE);
      log.info('nodes for kube-scheduler registered', {
        nodes: HOSTS,
        seconds: (Date.now() - t0) / 1000,
      });
      for (const [label, client] of [
        ['default', undefined],
        ['unthrottled', { qps: 5000, burst: 5000 }],
      ] as const) {
        peers.push(
          await kubeSchedulerRun(cp, kc, { label, n: INSTANCES, request: M1_NANO, client, log }),
        );
        const r = peers[peers.length - 1] as BindRun;
        log.info('kube-scheduler run', { label, bindingsPerSecond: bindingsPerSecond(r) });
      }
      await deleteNodes(kc);
    } catch (err) {
      await cp.stop();
      throw err;
    }
  }
  const port = await freePort();
  // BENCH_OPERATOR_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR" profiles the operator.
  const nodeArgs = (process.env.BENCH_OPERATOR_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const operator = spawn(
    process.execPath,
    [...nodeArgs, join(root, 'operator', 'dist', 'main.js')],
    {
      env: {
        ...process.env,
        KUBECONFIG: cp.endpoints.kubeconfigPath,
        KOVA_HEALTH_PORT: String(port),
        KOVA_LOG_LEVEL: 'error',
        POD_NAME: 'bench-operator',
      },
      stdio: ['ignore', 'inherit', 'inherit'],
    },
  );
  let fleet: SimulatedFleet | undefined;
  const exited = new Promise<never>((_, reject) =>
    operator.once('exit', (code) => reject(new Error(`the operator exited (${code})`))),
  );
  try {
    const api = kc.makeApiClient(CustomObjectsApi);
    await applyCrds(cp.endpoints.kubeconfigPath);
    await applyFile(join(root, 'examples', 'flavors.yaml'), {
      kubeconfigPath: cp.endpoints.kubeconfigPath,
    });
    await api.createClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: 'networks',
      body: {
        apiVersion: API_VERSION,
        kind: 'Network',
        metadata: { name: 'bench' },
        spec: {
          cidr: '10.128.0.0/16',
          gateway: '10.128.0.1',
          allocationPools: [{ start: '10.128.0.10', end: '10.128.255.250' }],
          bridge: 'kova-bench',
        },
      },
    });
    await api.createClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: 'images',
      body: {
        apiVersion: API_VERSION,
        kind: 'Image',
        metadata: { name: 'bench' },
        spec: {
          source: 'https://images.example.com/bench.qcow2',
          format: 'qcow2',
          sha256: randomBytes(32).toString('hex'),
        },
      },
    });
    fleet = new SimulatedFleet(kc);
    const t0 = Date.now();
    await fleet.create(
      Array.from({ length: HOSTS }, (_, i) => ({
        name: `hv-${String(i).padStart(4, '0')}`,
        ...HOST,
      })),
      40,
    );
    fleet.startHeartbeats(10_000);
    log.info('hypervisors registered', { hosts: HOSTS, seconds: (Date.now() - t0) / 1000 });
    await until(
      'the operator to lead and see every hypervisor',
      async () => {
        const m = await scrape(`http://127.0.0.1:${port}/metrics`).catch(
          () => new Map<string, number>(),
        );
        return (
          total(m, 'kova_leader_is_leader') === 1 &&
          total(m, 'kova_hypervisor_capacity', 'resource="vcpus"') >= HOSTS * HOST.vcpus * 4
        );
      },
      300_000,
      500,
    );

    const before = await scrape(`http://127.0.0.1:${port}/metrics`);
    const boundAt = new Map<string, number>();
    const watch = new Informer<Inst>(
      kc,
      { apiVersion: API_VERSION, kind: 'Instance', plural: 'instances', namespace: 'default' },
      { logger: log },
    );
    watch.on((inst) => {
      if (inst.status?.nodeName && !boundAt.has(inst.metadata.name))
        boundAt.set(inst.metadata.name, performance.now());
    });
    await watch.start();
    const names = Array.from({ length: INSTANCES }, (_, i) => `s-${i}`);
    const kova = await measureBinds(
      cp,
      'kova',
      names,
      (name) =>
        api.createNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          plural: 'instances',
          namespace: 'default',
          body: {
            apiVersion: API_VERSION,
            kind: 'Instance',
            metadata: { name },
            spec: { flavor: 'm1.nano', image: 'bench', networks: [{ network: 'bench' }] },
          },
        }),
      boundAt,
      {
        'kube-apiserver': pidsOf('kube-apiserver', cp.endpoints.dir)[0],
        etcd: pidsOf('etcd', cp.endpoints.dir)[0],
        operator: operator.pid,
      },
      exited,
    );
    const after = await scrape(`http://127.0.0.1:${port}/metrics`);
    await watch.stop();
    const cpu = kova.cpuSeconds;
    const elapsed = kova.elapsedSeconds;
    const window = kova.windowMs;
    const toBind = kova.toBindMs;
    const createdIn = kova.createMs;
    const delta = (name: string, ...labels: string[]) =>
      total(after, name, ...labels) - total(before, name, ...labels);
    const decisions = delta('kova_scheduling_duration_seconds_count');
    const writes = ['finalizers', 'allocate', 'status'].map((op) => ({
      op,
      n: delta('kova_operator_api_write_duration_seconds_count', `op="${op}"`),
      s: delta('kova_operator_api_write_duration_seconds_sum', `op="${op}"`),
    }));
    const verdict = await verify(api);
    const rssMiB = total(after, 'kova_operator_process_resident_memory_bytes') / 2 ** 20;

    const rows: Row[] = [
      {
        measure: `scheduler: bindings/s (${INSTANCES} Instances, ${HOSTS} hypervisors)`,
        value: (INSTANCES / (window / 1000)).toFixed(0),
        goal: '≥ 700',
      },
      {
        measure: 'scheduler: creation rate the API server took (creates/s)',
        value: (INSTANCES / (createdIn / 1000)).toFixed(0),
      },
      {
        measure: 'scheduler: time to bind p50 / p99',
        value: `${ms(quantile(toBind, 0.5))} / ${ms(quantile(toBind, 0.99))}`,
      },
      {
        measure: `scheduler: compute per decision alone (${HOSTS} hosts, no other load)`,
        value: `${aloneMs().toFixed(3)} ms`,
        goal: '≤ 1 ms',
      },
      {
        measure: 'scheduler: compute per decision in the operator during the run',
        value: `${((delta('kova_scheduling_duration_seconds_sum') / decisions) * 1000).toFixed(3)} ms`,
        goal: '≤ 1 ms',
      },
      ...writes.map((w) => ({
        measure: `scheduler: API write "${w.op}" per binding, mean latency`,
        value: `${(w.n / INSTANCES).toFixed(2)} × ${((w.s / w.n) * 1000).toFixed(1)} ms`,
      })),
      {
        measure: `scheduler: CPU used (s of ${elapsed.toFixed(0)} s × ${cpus().length} cores): apiserver / etcd / operator`,
        value: `${cpu['kube-apiserver']?.toFixed(0)} / ${cpu.etcd?.toFixed(0)} / ${cpu.operator?.toFixed(0)}`,
      },
      {
        measure: `operator RSS holding ${INSTANCES} Instances, ${HOSTS} hypervisors`,
        value: `${rssMiB.toFixed(0)} MiB`,
      },
      {
        measure: 'verified: hosts over ratio / duplicate IPs / duplicate MACs',
        value: `${verdict.overRatio} / ${verdict.dupIPs} / ${verdict.dupMACs}`,
      },
    ];
    const grids: Grid[] = [];
    const runs = [kova, ...peers];
    if (peers.length) {
      const unthrottled = peers.find((p) => p.label === 'ks-unthrottled') as BindRun;
      const rate = (r: BindRun) => bindingsPerSecond(r).toFixed(0);
      const wpb = (r: BindRun) => writesPerBinding(r, r === kova ? 'POST instances' : 'POST pods');
      const ratio = bindingsPerSecond(kova) / bindingsPerSecond(unthrottled);
      rows.unshift(
        {
          measure: `scheduler side by side: bindings/s kova / kube-scheduler default / unthrottled`,
          value: runs.map(rate).join(' / '),
        },
        {
          measure: 'scheduler side by side: kova / unthrottled kube-scheduler (bindings/s)',
          value: ratio.toFixed(2),
          goal: '≥ 1',
        },
        {
          measure: 'scheduler side by side: API writes per binding kova / kube-scheduler',
          value: `${wpb(kova).perBinding.toFixed(2)} / ${wpb(unthrottled).perBinding.toFixed(2)}`,
          goal: '≤ 1.5',
        },
      );
      const cell = (r: BindRun, f: (r: BindRun) => string) => f(r);
      const line = (measure: string, f: (r: BindRun) => string) => [
        measure,
        ...runs.map((r) => cell(r, f)),
      ];
      grids.push({
        title: `scheduler side by side: ${INSTANCES} objects onto ${HOSTS} hosts, one control plane, one run`,
        header: [
          'measure',
          'kova',
          'kube-scheduler default (QPS 50, burst 100)',
          'kube-scheduler unthrottled (qps/burst 5000)',
        ],
        rows: [
          line('bindings/s', rate),
          line(
            'time to bind p50 / p99',
            (r) => `${ms(quantile(r.toBindMs, 0.5))} / ${ms(quantile(r.toBindMs, 0.99))}`,
          ),
          line('API writes per binding', (r) => wpb(r).perBinding.toFixed(2)),
          line('API writes per binding, events left out', (r) =>
            (
              wpb(r).perBinding -
              Object.entries(wpb(r).counted)
                .filter(([what]) => what.endsWith(' events'))
                .reduce((a, [, n]) => a + n / r.n, 0)
            ).toFixed(2),
          ),
          ...[...new Set(runs.flatMap((r) => Object.keys(wpb(r).counted)))].sort().map((what) =>
            line(`  of which ${what}`, (r) => {
              const n = wpb(r).counted[what];
              return n ? (n / r.n).toFixed(2) : '—';
            }),
          ),
          line('Lease writes per binding (heartbeats; left out above)', (r) =>
            (sumOf(r.writes, (what) => what.endsWith(' leases')) / r.n).toFixed(2),
          ),
          line('API reads (GET, LIST) per binding', (r) =>
            (sumOf(r.reads, () => true) / r.n).toFixed(2),
          ),
          line('API server CPU ms per binding', (r) =>
            (((r.cpuSeconds['kube-apiserver'] ?? 0) * 1000) / r.n).toFixed(1),
          ),
          line('creates/s the API server took', (r) => (r.n / (r.createMs / 1000)).toFixed(0)),
          line('CPU s: apiserver / etcd / scheduler', (r) =>
            Object.values(r.cpuSeconds)
              .map((v) => v.toFixed(0))
              .join(' / '),
          ),
          line('run: first create → last bind', (r) => `${r.elapsedSeconds.toFixed(0)} s`),
          line('kova / this (bindings/s)', (r) =>
            (bindingsPerSecond(kova) / bindingsPerSecond(r)).toFixed(2),
          ),
        ],
      });
    }
    // ks-default ran first; the chart lists kova first.
    const seriesName: Record<string, string> = {
      kova: 'kova',
      'ks-default': 'kube-scheduler, default client limits (QPS 50)',
      'ks-unthrottled': 'kube-scheduler, unthrottled (qps/burst 5000)',
    };
    writeChart(
      'scheduler-throughput',
      lineChart({
        title: `Objects bound over time: ${INSTANCES} onto ${HOSTS} hosts, same control plane`,
        xLabel: 'seconds since the first create call',
        yLabel: 'objects bound',
        series: runs.map((r) => ({
          name: `${seriesName[r.label] ?? r.label}: ${bindingsPerSecond(r).toFixed(0)}/s`,
          points: [[0, 0], ...r.boundAtMs.map((t, i): [number, number] => [t / 1000, i + 1])],
        })),
      }),
    );
    writeResult(
      'scheduler-throughput',
      rows,
      {
        hosts: HOSTS,
        instances: INSTANCES,
        host: HOST,
        createConcurrency: CREATE_CONCURRENCY,
        bindWindowMs: window,
        createMs: createdIn,
        timeToBindMs: toBind,
        decisions,
        cpuSeconds: cpu,
        elapsedSeconds: elapsed,
        schedulingSecondsSum: delta('kova_scheduling_duration_seconds_sum'),
        writes,
        operatorRssMiB: rssMiB,
        verdict,
        runs: runs.map((r) => ({
          ...r,
          ...writesPerBinding(r, r === kova ? 'POST instances' : 'POST pods'),
        })),
        apiWritesCounted:
          'mutating requests (POST/PUT/PATCH/APPLY/DELETE) in apiserver_request_total from the first create to 3 s after the last bind, less the benchmark’s own creates and Lease writes; events counted',
      },
      grids,
    );
    if (verdict.overRatio || verdict.dupIPs || verdict.dupMACs) process.exitCode = 1;
  } finally {
    await fleet?.stop();
    exited.catch(() => undefined);
    if (operator.exitCode === null) {
      operator.kill('SIGTERM');
      await new Promise((r) => operator.once('exit', r));
    }
    await cp.stop();
  }
}

/** The scheduler's decision alone on this machine: the operator's selectHost over HOSTS hosts. */
function aloneMs(): number {
  const hosts: HostState[] = Array.from({ length: HOSTS }, (_, i) => ({
    name: `hv-${i}`,
    disabled: false,
    labels: {},
    capacity: { vcpus: HOST.vcpus, memoryMiB: HOST.memoryMiB, diskGiB: HOST.diskGiB },
    reserved: { vcpus: 0, memoryMiB: 512, diskGiB: 0 },
    ratios: { cpu: 4, ram: 1, disk: 1 },
    used: { vcpus: i % 8, memoryMiB: 128 * (i % 8), diskGiB: i % 8 },
    recentFailures: 0,
    groupMembers: new Map(),
  }));
  const req: RequestSpec = {
    resources: { vcpus: 1, memoryMiB: 128, diskGiB: 1 },
    arch: 'x86_64',
    triedNodes: new Set(),
  };
  const opts = {
    multipliers: {
      ram: 1,
      cpu: 1,
      disk: 1,
      buildFailure: 10,
      softAffinity: 1,
      softAntiAffinity: 1,
    },
    hostSubsetSize: 1,
  };
  for (let i = 0; i < 200; i++) selectHost(hosts, req, opts);
  const runs = 2000;
  const t = performance.now();
  for (let i = 0; i < runs; i++) selectHost(hosts, req, opts);
  return (performance.now() - t) / runs;
}

/** Hosts whose bound Instances exceed capacity × ratio − reserved; duplicate addresses. */
async function verify(
  api: CustomObjectsApi,
): Promise<{ overRatio: number; dupIPs: number; dupMACs: number }> {
  const list = <T>(plural: string, namespace?: string) =>
    (namespace
      ? api.listNamespacedCustomObject({ group: GROUP, version: VERSION, plural, namespace })
      : api.listClusterCustomObject({ group: GROUP, version: VERSION, plural })
    ).then((r) => (r as { items: T[] }).items);
  const instances = await list<Inst>('instances', 'default');
  const hosts = await list<IHypervisor>('hypervisors');
  const used = new Map<string, { vcpus: number; mem: number }>();
  for (const i of instances) {
    const u = used.get(i.status?.nodeName as string) ?? { vcpus: 0, mem: 0 };
    used.set(i.status?.nodeName as string, { vcpus: u.vcpus + 1, mem: u.mem + 128 });
  }
  const overRatio = hosts.filter((h) => {
    const u = used.get(h.metadata?.name as string);
    return u && (u.vcpus > HOST.vcpus * 4 || u.mem > HOST.memoryMiB - 512);
  }).length;
  const ips = instances.map((i) => i.status?.interfaces?.[0]?.ip);
  const macs = instances.map((i) => i.status?.interfaces?.[0]?.mac);
  return {
    overRatio,
    dupIPs: ips.length - new Set(ips).size,
    dupMACs: macs.length - new Set(macs).size,
  };
}

main().catch((err: Error) => {
  log.error('benchmark failed', { error: err });
  process.exit(1);
});

/** The requests of the kinds `which` picks. */
function sumOf(requests: Record<string, number>, which: (what: string) => boolean): number {
  return Object.entries(requests).reduce((n, [what, k]) => n + (which(what) ? k : 0), 0);
}
