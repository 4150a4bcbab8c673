// A real local control plane: etcd, kube-apiserver and kube-controller-manager built from the
// Go module proxy (hack/control-plane/build.sh), started on 127.0.0.1 with free ports; or, for
// a kubelet node whose pods run kova (`podsReach`), a whole one that pods can use.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { request, type RequestOptions } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const hackDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const buildScript = join(hackDir, 'control-plane', 'build.sh');
const superviseScript = join(hackDir, 'control-plane', 'supervise.sh');

export interface ControlPlaneOptions {
  /** Where binaries are cached; defaults to $KOVA_CACHE or ~/.cache/kova. */
  cacheDir?: string;
  /** Start kube-controller-manager (garbage collection, namespace deletion, role aggregation). Default true. */
  controllerManager?: boolean;
  /**
   * Run pods too, as a real cluster does: the API server listens on this address of this
   * machine (one pods can reach; loopback is not), admits ServiceAccount tokens into pods, and
   * kube-scheduler and the controllers of Deployments, DaemonSets, Jobs and ServiceAccounts run.
   */
  podsReach?: string;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

export interface ControlPlaneEndpoints {
  server: string;
  token: string;
  kubeconfigPath: string;
  /** The API server's self-signed serving certificate, trusted by the kubeconfig. */
  caPath: string;
  dir: string;
  /**
   * With `podsReach`: the CA a kubelet trusts for client certificates; the API server presents
   * one it signed when it calls kubelets (logs, exec).
   */
  kubeletClientCaPath?: string;
}

interface Component {
  name: string;
  args: string[];
  ready: (cp: LocalControlPlane) => Promise<boolean>;
}

/** Builds (or reuses) the pinned binaries and returns the directory that holds them. */
export async function ensureBinaries(cacheDir?: string, targets: string[] = []): Promise<string> {
  const env = cacheDir ? { ...process.env, KOVA_CACHE: cacheDir } : process.env;
  const { stdout } = await promisify(execFile)('bash', [buildScript, ...targets], {
    env,
    maxBuffer: 64 * 1024 * 1024,
  });
  return stdout.trim().split('\n').pop() ?? '';
}

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() =>
        typeof addr === 'object' && addr ? resolvePort(addr.port) : reject(new Error('no port')),
      );
    });
  });
}

const DIR_PREFIX = 'kova-cp-';
const OWNER_FILE = 'owner.pid';

/**
 * A temporary directory owned by this process. A starter killed with -9 cannot clean up: the
 * next one gives each directory of the same prefix whose owner is gone to `cleanUp` (by default
 * only removed), so what a killed run left does not pile up.
 */
export async function ownedTempDir(
  prefix: string,
  cleanUp = (dir: string) => rm(dir, { recursive: true, force: true }),
): Promise<string> {
  for (const name of await readdir(tmpdir())) {
    if (!name.startsWith(prefix)) continue;
    const dir = join(tmpdir(), name);
    const owner = Number(await readFile(join(dir, OWNER_FILE), 'utf8').catch(() => '0'));
    if (owner > 0 && !isAlive(owner)) await cleanUp(dir);
  }
  const dir = await mkdtemp(join(tmpdir(), prefix));
  await writeFile(join(dir, OWNER_FILE), String(process.pid));
  return dir;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class LocalControlPlane {
  readonly endpoints: ControlPlaneEndpoints;
  private readonly procs = new Map<string, ChildProcess>();
  private readonly exited = new Map<string, Promise<void>>();
  private readonly components: Component[];

  private constructor(
    private readonly binDir: string,
    endpoints: ControlPlaneEndpoints,
    components: Component[],
    private readonly log: NonNullable<ControlPlaneOptions['log']>,
  ) {
    this.endpoints = endpoints;
    this.components = components;
  }

  static async start(opts: ControlPlaneOptions = {}): Promise<LocalControlPlane> {
    const log = opts.log ?? (() => undefined);
    const binDir = await ensureBinaries(opts.cacheDir);
    if (opts.podsReach) await ensureBinaries(opts.cacheDir, ['kube-scheduler']);
    const dir = await ownedTempDir(DIR_PREFIX);
    try {
      const cp = new LocalControlPlane(
        binDir,
        ...(await prepare(dir, opts.controllerManager ?? true, opts.podsReach)),
        log,
      );
      await cp.startAll();
      return cp;
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** Version string the API server reports (e.g. v1.35.4). */
  async serverVersion(): Promise<string> {
    const res = await this.get('/version');
    return (JSON.parse(res.body) as { gitVersion: string }).gitVersion;
  }

  /** Stops one component (e.g. to test recovery); restart it with startComponent. */
  async stopComponent(name: string): Promise<void> {
    const proc = this.procs.get(name);
    if (!proc) return;
    proc.stdin?.end();
    await this.exited.get(name);
    this.procs.delete(name);
  }

  async startComponent(name: string): Promise<void> {
    const component = this.components.find((c) => c.name === name);
    if (!component) throw new Error(`unknown control-plane component ${name}`);
    this.spawn(component);
    await this.waitReady(component);
  }

  async stop(): Promise<void> {
    for (const c of [...this.components].reverse()) await this.stopComponent(c.name);
    await rm(this.endpoints.dir, { recursive: true, force: true });
  }

  private async startAll(): Promise<void> {
    try {
      for (const c of this.components) await this.startComponent(c.name);
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  private spawn(c: Component): void {
    const logPath = join(this.endpoints.dir, `${c.name}.log`);
    const out = createWriteStream(logPath, { flags: 'a' });
    // A process group of its own: Ctrl-C in a terminal reaches only our process, which then
    // stops the components in order instead of having them all die at once.
    const proc = spawn('bash', [superviseScript, join(this.binDir, c.name), ...c.args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    });
    proc.stdout.pipe(out);
    proc.stderr.pipe(out);
    this.procs.set(c.name, proc);
    this.exited.set(
      c.name,
      new Promise((r) =>
        proc.on('exit', (code, signal) => {
          this.log('control-plane component exited', { component: c.name, code, signal });
          r();
        }),
      ),
    );
    this.log('control-plane component started', { component: c.name, pid: proc.pid, log: logPath });
  }

  private async waitReady(c: Component, timeoutMs = 120_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let problem = `did not become ready within ${timeoutMs / 1000}s`;
    while (Date.now() < deadline) {
      const code = this.procs.get(c.name)?.exitCode;
      if (code != null) {
        problem = `exited with code ${code} before becoming ready`;
        break;
      }
      if (await c.ready(this).catch(() => false)) return;
      await sleep(100);
    }
    const logTail = (
      await readFile(join(this.endpoints.dir, `${c.name}.log`), 'utf8').catch(() => '')
    ).slice(-3000);
    throw new Error(`${c.name} ${problem}; the end of its log:\n${logTail}`);
  }

  /** GET against the API server as admin, verifying its serving certificate. */
  async get(path: string): Promise<{ status: number; body: string }> {
    const ca = await readFile(this.endpoints.caPath);
    return httpsGet(`${this.endpoints.server}${path}`, {
      ca,
      headers: { Authorization: `Bearer ${this.endpoints.token}` },
    });
  }
}

function httpsGet(url: string, opts: RequestOptions): Promise<{ status: number; body: string }> {
  return new Promise((resolveRes, reject) => {
    const req = request(url, opts, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolveRes({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

/** Controllers the tests rely on; with pods also those that run workloads and mount tokens. */
const CONTROLLERS = [
  'garbagecollector',
  'namespace',
  'serviceaccount-token',
  'clusterrole-aggregation',
];
const POD_CONTROLLERS = [
  'deployment',
  'replicaset',
  'daemonset',
  'job',
  'serviceaccount',
  'root-ca-cert-publisher',
  'endpointslice',
  // Lifts the not-ready taint the API server puts on a new Node once its kubelet is Ready.
  'nodelifecycle',
];

/** Where a control plane's components listen and keep their files. */
interface Layout {
  dir: string;
  certDir: string;
  saKey: string;
  kubeconfigPath: string;
  ports: Record<'etcdClient' | 'etcdPeer' | 'api' | 'kcm' | 'scheduler', number>;
  podsReach?: string;
}

async function prepare(
  dir: string,
  withControllerManager: boolean,
  podsReach?: string,
): Promise<[ControlPlaneEndpoints, Component[]]> {
  const [etcdClient, etcdPeer, api, kcm, scheduler] = await Promise.all([
    freePort(),
    freePort(),
    freePort(),
    freePort(),
    freePort(),
  ]);
  const layout: Layout = {
    dir,
    certDir: join(dir, 'certs'),
    saKey: join(dir, 'sa.key'),
    kubeconfigPath: join(dir, 'kubeconfig'),
    ports: { etcdClient, etcdPeer, api, kcm, scheduler },
    podsReach,
  };
  const token = randomBytes(24).toString('hex');
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  await writeFile(layout.saKey, privateKey.export({ type: 'pkcs8', format: 'pem' }), {
    mode: 0o600,
  });
  await writeFile(join(dir, 'tokens.csv'), `${token},admin,admin,"system:masters"\n`, {
    mode: 0o600,
  });
  const ep: ControlPlaneEndpoints = {
    server: `https://${podsReach ?? '127.0.0.1'}:${api}`,
    token,
    kubeconfigPath: layout.kubeconfigPath,
    caPath: join(layout.certDir, 'apiserver.crt'),
    dir,
  };
  if (podsReach) ep.kubeletClientCaPath = await kubeletClientCertificate(dir);
  await writeFile(layout.kubeconfigPath, kubeconfig(ep), { mode: 0o600 });
  const components = [etcd(layout), apiServer(layout)];
  if (withControllerManager) components.push(controllerManager(layout));
  if (podsReach) components.push(kubeScheduler(layout));
  return [ep, components];
}

const etcdUrl = (l: Layout) => `http://127.0.0.1:${l.ports.etcdClient}`;

function etcd(l: Layout): Component {
  const peer = `http://127.0.0.1:${l.ports.etcdPeer}`;
  return {
    name: 'etcd',
    args: [
      `--data-dir=${join(l.dir, 'etcd')}`,
      '--name=default',
      `--listen-client-urls=${etcdUrl(l)}`,
      `--advertise-client-urls=${etcdUrl(l)}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=default=${peer}`,
      // Tests and the demo trade durability for speed; this data dir is thrown away.
      '--unsafe-no-fsync',
      '--log-level=warn',
    ],
    ready: async () => (await fetch(`${etcdUrl(l)}/health`)).ok,
  };
}

function apiServer(l: Layout): Component {
  const forPods = l.podsReach
    ? [
        `--advertise-address=${l.podsReach}`,
        `--kubelet-client-certificate=${join(l.dir, 'kubelet-client.crt')}`,
        `--kubelet-client-key=${join(l.dir, 'kubelet-client.key')}`,
        // Nodes' hostnames do not resolve here; their InternalIP does.
        '--kubelet-preferred-address-types=InternalIP',
      ]
    : // Without pods, nothing needs tokens mounted, and tests create pods without accounts.
      ['--disable-admission-plugins=ServiceAccount'];
  return {
    name: 'kube-apiserver',
    args: [
      `--etcd-servers=${etcdUrl(l)}`,
      `--secure-port=${l.ports.api}`,
      `--bind-address=${l.podsReach ?? '127.0.0.1'}`,
      ...forPods,
      `--cert-dir=${l.certDir}`,
      '--service-cluster-ip-range=10.0.0.0/24',
      '--allow-privileged=true',
      '--authorization-mode=RBAC',
      `--token-auth-file=${join(l.dir, 'tokens.csv')}`,
      '--service-account-issuer=https://kubernetes.default.svc',
      `--service-account-key-file=${l.saKey}`,
      `--service-account-signing-key-file=${l.saKey}`,
      '--enable-priority-and-fairness=false',
      '--profiling=false',
      '--v=1',
    ],
    ready: async (cp) => (await cp.get('/readyz')).status === 200,
  };
}

/** Flags kube-controller-manager and kube-scheduler share: the admin kubeconfig, loopback. */
const clientArgs = (l: Layout) => [
  `--kubeconfig=${l.kubeconfigPath}`,
  `--authentication-kubeconfig=${l.kubeconfigPath}`,
  `--authorization-kubeconfig=${l.kubeconfigPath}`,
  '--bind-address=127.0.0.1',
  '--leader-elect=false',
  '--v=1',
];

const healthy = (port: number) => async () =>
  (await httpsGet(`https://127.0.0.1:${port}/healthz`, { rejectUnauthorized: false })).status ===
  200;

function controllerManager(l: Layout): Component {
  const controllers = [...CONTROLLERS, ...(l.podsReach ? POD_CONTROLLERS : [])];
  return {
    name: 'kube-controller-manager',
    args: [
      ...clientArgs(l),
      `--secure-port=${l.ports.kcm}`,
      `--service-account-private-key-file=${l.saKey}`,
      `--root-ca-file=${join(l.certDir, 'apiserver.crt')}`,
      `--controllers=${controllers.join(',')}`,
      `--cert-dir=${join(l.dir, 'kcm-certs')}`,
    ],
    ready: healthy(l.ports.kcm),
  };
}

function kubeScheduler(l: Layout): Component {
  return {
    name: 'kube-scheduler',
    args: [...clientArgs(l), `--secure-port=${l.ports.scheduler}`],
    ready: healthy(l.ports.scheduler),
  };
}

/**
 * A CA and the API server's client certificate for kubelets (group system:masters), made with
 * openssl; returns the CA's path.
 */
async function kubeletClientCertificate(dir: string): Promise<string> {
  // Arguments split at spaces: the paths are under a mkdtemp directory, without any.
  const openssl = (args: string) => promisify(execFile)('openssl', args.split(' '));
  const [ca, client] = [join(dir, 'kubelet-client-ca'), join(dir, 'kubelet-client')];
  const newKey = (path: string) => `-newkey rsa:2048 -nodes -keyout ${path}.key`;
  await openssl(`req -x509 ${newKey(ca)} -days 7 -out ${ca}.crt -subj /CN=kova-kubelet-client-ca`);
  const subject = '/O=system:masters/CN=kube-apiserver-kubelet-client';
  await openssl(`req ${newKey(client)} -out ${client}.csr -subj ${subject}`);
  await openssl(
    `x509 -req -in ${client}.csr -CA ${ca}.crt -CAkey ${ca}.key -CAcreateserial -days 7 -out ${client}.crt`,
  );
  return `${ca}.crt`;
}

function kubeconfig(ep: ControlPlaneEndpoints): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    'current-context: kova',
    'clusters:',
    '- name: kova',
    '  cluster:',
    `    server: ${ep.server}`,
    `    certificate-authority: ${ep.caPath}`,
    'users:',
    '- name: admin',
    '  user:',
    `    token: ${ep.token}`,
    'contexts:',
    '- name: kova',
    '  context:',
    '    cluster: kova',
    '    user: admin',
    '',
  ].join('\n');
}

/** Path of the pinned kubectl that build.sh caches. */
export function kubectlPath(
  cacheDir = process.env.KOVA_CACHE ?? join(process.env.HOME ?? '/root', '.cache', 'kova'),
): string {
  return join(cacheDir, 'bin', 'kubectl');
}
