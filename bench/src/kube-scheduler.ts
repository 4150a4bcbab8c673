// kube-scheduler side by side with kova's scheduler, on the same local control plane: Node
// objects sized like kova's simulated hypervisors (no kubelets: only binding is measured), pods
// requesting what an m1.nano Instance does, and kube-scheduler built from the same pinned
// Kubernetes modules (hack/control-plane/build.sh kube-scheduler).
import { CoreV1Api, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { Informer, type Logger } from '@kova/controller-kit';
import { freePort, until, type LocalControlPlane } from '@kova/hack';
import { execFileSync, spawn } from 'node:child_process';
import { openSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuSeconds, pidsOf } from './proc.js';
import { readsBetween, scrapeApiServer, writesBetween } from './prometheus.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** One scheduler's run: N objects created at once, bound by the scheduler under test. */
export interface BindRun {
  label: string;
  n: number;
  /** Create call sent → first watch event showing the object bound, per object (ms). */
  toBindMs: number[];
  /** When each object was seen bound, ms after the first create call. */
  boundAtMs: number[];
  /** First to last bind seen (ms). */
  windowMs: number;
  createMs: number;
  /** Mutating requests the API server served in the run, by "VERB resource[/subresource]". */
  writes: Record<string, number>;
  /** GET and LIST requests it served in the run, the same way. */
  reads: Record<string, number>;
  cpuSeconds: Record<string, number>;
  elapsedSeconds: number;
}

export const bindingsPerSecond = (r: BindRun) => r.n / (r.windowMs / 1000);

/**
 * API writes per binding: every mutating request the API server served from the first create
 * to 3 s after the last bind, less the benchmark's own creates and Lease writes (heartbeats,
 * leader election: a cost per second, not per binding). Events are counted.
 */
export function writesPerBinding(
  r: BindRun,
  ownCreates: string,
): { perBinding: number; counted: Record<string, number> } {
  const counted: Record<string, number> = {};
  let sum = 0;
  for (const [what, n] of Object.entries(r.writes)) {
    const own = what === ownCreates ? r.n : 0;
    if (what.endsWith(' leases') || n - own <= 0) continue;
    counted[what] = n - own;
    sum += n - own;
  }
  return { perBinding: sum / r.n, counted };
}

/**
 * Creates `names` 100 at a time while an already started watch records binds; returns once
 * every one is bound, with the API server's writes and the CPU of `pids` over the run.
 */
export async function measureBinds(
  cp: LocalControlPlane,
  label: string,
  names: string[],
  create: (name: string) => Promise<unknown>,
  boundAt: Map<string, number>,
  pids: Record<string, number | undefined>,
  failed?: Promise<never>,
): Promise<BindRun> {
  const cpuBefore = Object.fromEntries(
    Object.entries(pids).map(([k, pid]) => [k, pid ? cpuSeconds(pid) : 0]),
  );
  const before = await scrapeApiServer(cp.endpoints);
  const sentAt = new Map<string, number>();
  const start = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 100 }, async () => {
      for (let i = next++; i < names.length; i = next++) {
        const name = names[i] as string;
        sentAt.set(name, performance.now());
        await create(name);
      }
    }),
  );
  const createMs = performance.now() - start;
  const all = until(
    `every ${label} object bound`,
    () => boundAt.size >= names.length,
    900_000,
    100,
  );
  await (failed ? Promise.race([all, failed]) : all);
  const elapsedSeconds = (performance.now() - start) / 1000;
  await new Promise((r) => setTimeout(r, 3000));
  const after = await scrapeApiServer(cp.endpoints);
  const cpu = Object.fromEntries(
    Object.entries(pids).map(([k, pid]) => [
      k,
      pid ? cpuSeconds(pid) - (cpuBefore[k] as number) : 0,
    ]),
  );
  const binds = names.map((n) => boundAt.get(n) as number);
  return {
    label,
    n: names.length,
    toBindMs: names.map((n, i) => (binds[i] as number) - (sentAt.get(n) as number)),
    boundAtMs: binds.map((b) => b - start).sort((a, b) => a - b),
    windowMs: Math.max(...binds) - Math.min(...binds),
    createMs,
    writes: Object.fromEntries(writesBetween(before, after)),
    reads: Object.fromEntries(readsBetween(before, after)),
    cpuSeconds: cpu,
    elapsedSeconds,
  };
}

/** kube-scheduler at the pinned version, built on first use (seconds once kube-apiserver's build cache is warm). */
export function kubeSchedulerPath(): string {
  const bin = execFileSync(
    'bash',
    [join(root, 'hack', 'control-plane', 'build.sh'), 'kube-scheduler'],
    {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  ).trim();
  return join(bin, 'kube-scheduler');
}

/** Sized like a simulated hypervisor after kova's ratios: 4 cores × 4.0, 1,536 − 512 MiB. */
export interface NodeSize {
  cpu: number;
  memoryMiB: number;
  diskGiB: number;
}

const RUN_LABEL = 'kova.dev/bench-run';
const NODE_LABEL = 'kova.dev/bench-node';

/** Ready, untainted Node objects with capacity and no kubelet. */
export async function createNodes(
  kc: KubeConfig,
  count: number,
  size: NodeSize,
  concurrency = 40,
): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  const resources = {
    cpu: String(size.cpu),
    memory: `${size.memoryMiB}Mi`,
    'ephemeral-storage': `${size.diskGiB}Gi`,
    pods: '110',
  };
  const one = async (i: number) => {
    const name = `ks-${String(i).padStart(4, '0')}`;
    await core.createNode({
      body: {
        metadata: { name, labels: { 'kubernetes.io/hostname': name, [NODE_LABEL]: 'true' } },
      },
    });
    await core.patchNodeStatus({
      name,
      body: [
        {
          op: 'add',
          path: '/status',
          value: {
            capacity: resources,
            allocatable: resources,
            conditions: [
              {
                type: 'Ready',
                status: 'True',
                reason: 'Simulated',
                message: 'no kubelet: binding only',
                lastHeartbeatTime: new Date(),
                lastTransitionTime: new Date(),
              },
            ],
          },
        },
      ],
    });
    // The API server's TaintNodesByCondition admission tainted it not-ready at creation; no
    // node lifecycle controller runs here to lift it once Ready.
    await core.patchNode({ name, body: [{ op: 'add', path: '/spec/taints', value: [] }] });
  };
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < count; i = next++) await one(i);
    }),
  );
}

export async function deleteNodes(kc: KubeConfig): Promise<void> {
  await kc
    .makeApiClient(CoreV1Api)
    .deleteCollectionNode({ labelSelector: NODE_LABEL, gracePeriodSeconds: 0 });
}

/**
 * Starts kube-scheduler with the given client limits (none: its defaults, QPS 50 / burst 100),
 * has it bind `n` pods requesting `request`, stops it, force-deletes the pods (no kubelet would
 * confirm a graceful deletion).
 */
export async function kubeSchedulerRun(
  cp: LocalControlPlane,
  kc: KubeConfig,
  opts: {
    label: string;
    n: number;
    request: NodeSize;
    client?: { qps: number; burst: number };
    log: Logger;
  },
): Promise<BindRun> {
  const core = kc.makeApiClient(CoreV1Api);
  const dir = cp.endpoints.dir;
  const config = join(dir, `kube-scheduler-${opts.label}.yaml`);
  writeFileSync(
    config,
    [
      'apiVersion: kubescheduler.config.k8s.io/v1',
      'kind: KubeSchedulerConfiguration',
      'clientConnection:',
      `  kubeconfig: ${cp.endpoints.kubeconfigPath}`,
      ...(opts.client ? [`  qps: ${opts.client.qps}`, `  burst: ${opts.client.burst}`] : []),
      'leaderElection:',
      '  leaderElect: false',
      '',
    ].join('\n'),
  );
  const logFd = openSync(join(dir, `kube-scheduler-${opts.label}.log`), 'a');
  const proc = spawn(
    kubeSchedulerPath(),
    [
      `--config=${config}`,
      `--secure-port=${await freePort()}`,
      '--bind-address=127.0.0.1',
      `--authentication-kubeconfig=${cp.endpoints.kubeconfigPath}`,
      `--authorization-kubeconfig=${cp.endpoints.kubeconfigPath}`,
      '--v=1',
    ],
    { stdio: ['ignore', logFd, logFd] },
  );
  const failed = new Promise<never>((_, reject) =>
    proc.once('exit', (code) => reject(new Error(`kube-scheduler exited (${code})`))),
  );
  failed.catch(() => undefined);
  const run = `ks-${opts.label}`;
  const boundAt = new Map<string, number>();
  const watch = new Informer<V1Pod & { metadata: { name: string } }>(
    kc,
    { apiVersion: 'v1', kind: 'Pod', plural: 'pods', namespace: 'default' },
    { logger: opts.log, labelSelector: `${RUN_LABEL}=${run}` },
  );
  watch.on((pod) => {
    if (pod.spec?.nodeName && !boundAt.has(pod.metadata.name))
      boundAt.set(pod.metadata.name, performance.now());
  });
  const pod = (name: string) =>
    core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name, labels: { [RUN_LABEL]: run } },
        spec: {
          terminationGracePeriodSeconds: 0,
          containers: [
            {
              name: 'guest',
              image: 'registry.k8s.io/pause:3.10',
              resources: {
                requests: {
                  cpu: String(opts.request.cpu),
                  memory: `${opts.request.memoryMiB}Mi`,
                  'ephemeral-storage': `${opts.request.diskGiB}Gi`,
                },
              },
            },
          ],
        },
      },
    });
  try {
    await watch.start();
    // Warm-up: its informers have synced once it binds one pod.
    await pod(`${run}-warm`);
    await Promise.race([
      until('kube-scheduler to bind a first pod', () => boundAt.has(`${run}-warm`), 120_000, 100),
      failed,
    ]);
    boundAt.clear();
    const names = Array.from({ length: opts.n }, (_, i) => `${run}-${i}`);
    return await measureBinds(
      cp,
      run,
      names,
      pod,
      boundAt,
      {
        'kube-apiserver': pidsOf('kube-apiserver', cp.endpoints.dir)[0],
        etcd: pidsOf('etcd', cp.endpoints.dir)[0],
        'kube-scheduler': proc.pid,
      },
      failed,
    );
  } finally {
    await watch.stop();
    if (proc.exitCode === null) {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
    }
    await core.deleteCollectionNamespacedPod({
      namespace: 'default',
      labelSelector: `${RUN_LABEL}=${run}`,
      gracePeriodSeconds: 0,
    });
    await until(
      `the ${run} pods deleted`,
      async () =>
        (
          await core.listNamespacedPod({
            namespace: 'default',
            labelSelector: `${RUN_LABEL}=${run}`,
            limit: 1,
          })
        ).items.length === 0,
      300_000,
      500,
    );
  }
}
