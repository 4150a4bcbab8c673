// kova the way most users meet it: `helm install` onto a real kubelet node (containerd, CNI,
// kubelet and kube-proxy on this machine, kova's images imported; hack/src/kubelet-cluster.ts),
// the operator and the agent running in their pods next to the node's libvirtd. The install
// becomes Ready, the agent works through its real pod-bound token, the boot scenario (boot.ts)
// runs through the pods, `helm upgrade` to changed values keeps guests running, and `helm
// uninstall` refuses while Instances exist (the release recovers by a rollback), then removes
// kova and keeps the CRDs.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { logger } from '@kova/controller-kit';
import { KubeletCluster, kubectlPath, until } from '@kova/hack';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { Actions } from './actions.js';
import { boot } from './boot.js';
import { ConsoleClient, Output } from './console.js';
import { root, startCluster, type Cluster } from './cluster.js';
import { Instances } from './instances.js';

const run = promisify(execFile);
const log = logger('e2e-helm');
const NODE = 'kova-node-1';
const NS = 'kova-system';
const chart = join(root, 'charts', 'kova');
let kc: KubeletCluster;
let cluster: Cluster;
let stateDir: string;

async function tool(name: string, args: string[]): Promise<string> {
  const bin = join(dirname(kubectlPath()), name);
  const env = { ...process.env, KUBECONFIG: kc.kubeconfigPath };
  try {
    return (await run(bin, args, { env, maxBuffer: 16 * 1024 * 1024, timeout: 100_000 })).stdout;
  } catch (err) {
    const { stdout, stderr } = err as { stdout?: string; stderr?: string };
    throw new Error(`${name} ${args.join(' ')} failed: ${stderr ?? ''}${stdout ?? ''}`);
  }
}
const kubectl = (...args: string[]) => tool('kubectl', args);
const helm = (...args: string[]) => tool('helm', args);
const json = async <T>(...args: string[]) => JSON.parse(await kubectl(...args, '-o', 'json')) as T;

interface Pod {
  metadata: { name: string; uid: string; labels: Record<string, string> };
  spec: {
    hostNetwork?: boolean;
    containers: { env?: { name: string; value?: string }[]; securityContext?: object }[];
    securityContext?: { runAsUser?: number };
  };
  status: { phase: string; conditions?: { type: string; status: string }[] };
}
/** The pods of kova's operator Deployment and agent DaemonSet (not those of Helm's hooks). */
const pods = async () =>
  (
    await json<{ items: Pod[] }>(
      'get',
      'pods',
      '-n',
      NS,
      '-l',
      'app.kubernetes.io/component in (operator,node-agent)',
    )
  ).items;
const ready = (p: Pod) =>
  p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
const component = (p: Pod) => p.metadata.labels['app.kubernetes.io/component'];
const envOf = (p: Pod, name: string) => p.spec.containers[0]?.env?.find((e) => e.name === name);

/** Every pod of kova-system Ready, and as many as expected: the rollout is over. */
const allReady = (count: number) =>
  until(
    `${count} Ready pods in ${NS}`,
    async () => {
      const all = await pods();
      return all.length === count && all.every(ready) && all;
    },
    180_000,
    1000,
  );

/**
 * The test guest on the node, where the agent's pod reads it: in its state dir, the only host
 * path the chart mounts.
 */
async function applyGuestImage(): Promise<void> {
  const { stdout } = await run('bash', [join(root, 'hack', 'guest', 'build.sh')]);
  const guestDir = stdout.trim().split('\n').pop() as string;
  const onNode = join(stateDir, 'e2e-guest');
  await mkdir(onNode, { recursive: true });
  for (const f of ['root.qcow2', 'vmlinuz', 'initrd.img'])
    await copyFile(join(guestDir, f), join(onNode, f));
  const manifest = join(kc.dir, 'image.yaml');
  const image = await readFile(join(guestDir, 'image.yaml'), 'utf8');
  await writeFile(manifest, image.replaceAll(guestDir, onNode));
  await kubectl('apply', '-f', manifest);
}

const installArgs = () => [
  '--namespace',
  NS,
  '--set',
  'image.pullPolicy=Never',
  '--set',
  `agent.stateDir=${stateDir}`,
  // This machine's /dev/kvm cannot boot a Linux guest, and the agent's image has no QEMU to
  // find that out (its probe asks libvirt, which offers kvm): TCG, as the chart README says.
  '--set',
  'agent.virtType=qemu',
  // The test guest has no ACPI handler: a deletion waits this long before the hard stop.
  '--set',
  'agent.shutdownTimeoutSeconds=3',
];

let installedAt = 0;

// Long: on a cold cache this builds kube-scheduler, the kubelet, kube-proxy, the images and the
// test guest.
beforeAll(async () => {
  kc = await KubeletCluster.start({ node: NODE, log: (msg, f) => log.debug(msg, f) });
  stateDir = kc.stateDir;
  await run('bash', [join(root, 'hack', 'libvirt.sh')]);
  installedAt = Date.now();
  await helm('install', 'kova', chart, '--create-namespace', ...installArgs(), '--wait');
  await allReady(3);
  await applyGuestImage();
  cluster = await startCluster({
    suite: 'helm',
    given: { kubeconfigPath: kc.kubeconfigPath, stateDir },
  });
}, 1_800_000);

afterAll(async () => {
  if (!kc) return;
  // What a test that failed left: kova removes it while it still runs (kc.stop removes what
  // it could not).
  for (const kind of ['instances', 'networks'])
    await kubectl('delete', kind, '--all', '-A', '--wait', '--timeout=120s').catch((err: Error) =>
      log.warn(`could not delete the ${kind}`, { error: err.message }),
    );
  await kc.stop();
}, 300_000);

describe('helm install on a kubelet node', () => {
  it('runs on a Ready Node labelled as a kova hypervisor', async () => {
    const node = await json<{
      metadata: { labels: Record<string, string> };
      status: { conditions: { type: string; status: string }[] };
    }>('get', 'node', NODE);
    expect(node.status.conditions.find((c) => c.type === 'Ready')?.status).toBe('True');
    expect(node.metadata.labels['compute.kova.dev/hypervisor']).toBe('true');
  });

  it('makes every pod Ready: two operators as non-root, one privileged agent on the host network', async () => {
    const all = await pods();
    const operators = all.filter((p) => component(p) === 'operator');
    const agents = all.filter((p) => component(p) === 'node-agent');
    expect([operators.length, agents.length]).toEqual([2, 1]);
    expect(all.every(ready)).toBe(true);
    expect(operators.map((p) => p.spec.securityContext?.runAsUser)).toEqual([65532, 65532]);
    expect(agents[0]?.spec.hostNetwork).toBe(true);
    expect(agents[0]?.spec.containers[0]?.securityContext).toMatchObject({ privileged: true });
  });

  it('boots the first Instance through the pods (time from helm install logged)', async () => {
    const vms = new Instances(cluster);
    await vms.create('first');
    await vms.phase('first', 'Active');
    log.info('helm install to first Active Instance', {
      seconds: (Date.now() - installedAt) / 1000,
    });
    await vms.deleteAndWait('first');
  });

  it('passes `helm test`', async () => {
    expect(await helm('test', 'kova', '-n', NS)).toMatch(/Phase:\s+Succeeded/);
  });

  it("registers its node's Hypervisor through the agent's pod-bound token, which may write no other", async () => {
    const hv = await json<{ status?: { nodeName?: string; capacity?: { vcpus?: number } } }>(
      'get',
      'hypervisor',
      NODE,
    );
    expect(hv.status?.capacity?.vcpus).toBeGreaterThan(0);
    // The token the kubelet projected into the agent's pod, read where the kubelet keeps it.
    const agent = (await pods()).find((p) => component(p) === 'node-agent') as Pod;
    const volumes = join(kc.dir, 'kubelet', 'root', 'pods', agent.metadata.uid, 'volumes');
    const projected = join(volumes, 'kubernetes.io~projected');
    const [tokenVolume] = (await readdir(projected)).filter((d) => d.startsWith('kube-api-access'));
    const token = (await readFile(join(projected, tokenVolume as string, 'token'), 'utf8')).trim();
    const as = ['--token', token];
    expect((await kubectl(...as, 'get', 'hypervisor', NODE, '-o', 'name')).trim()).toBe(
      `hypervisor.compute.kova.dev/${NODE}`,
    );
    const other = JSON.stringify({
      apiVersion: 'compute.kova.dev/v1alpha1',
      kind: 'Hypervisor',
      metadata: { name: 'not-this-node' },
      spec: {},
    });
    const file = join(kc.dir, 'other-hypervisor.json');
    await writeFile(file, other);
    await expect(kubectl(...as, 'create', '-f', file)).rejects.toThrow(
      `the node agent of ${NODE} may only write Hypervisor ${NODE}`,
    );
  });
});

boot(() => cluster);

describe('day-2 through the pods', () => {
  // The operator's and the agent's real service accounts act on the actions (RBAC and node
  // isolation as installed), and the console endpoint listens on the node's InternalIP.
  it('kubectl kova restart reboots the guest and the history records it', async () => {
    const vms = new Instances(cluster);
    const act = new Actions(cluster);
    await vms.create('day2', { runStrategy: 'Manual' });
    const inst = await vms.phase('day2', 'Active');
    const before = await act.answer(inst, '/boot-id');
    const restart = new ConsoleClient(cluster, act).plugin(['restart', 'day2']);
    expect((await once(restart, 'exit'))[0]).toBe(0);
    expect(await act.answer(inst, '/boot-id')).not.toBe(before);
    const history = await act.kubectl(['get', 'ia', '--field-selector', 'spec.instance=day2']);
    expect(history).toMatch(
      new RegExp(`day2\\s+Reboot\\s+Succeeded\\s+Succeeded\\s+${await act.whoami()}`),
    );
  });

  it("kubectl kova console reaches the guest's shell through the agent pod's endpoint", async () => {
    const consoles = new ConsoleClient(cluster, new Actions(cluster));
    const p = consoles.plugin(['console', 'day2']);
    const out = new Output(p.stdout);
    await new Output(p.stderr).waitFor('Connected to the serial console');
    p.stdin.write('\necho helm-$((40+2))\n');
    await out.waitFor('helm-42');
    p.stdin.end();
    expect((await once(p, 'exit'))[0]).toBe(0);
    await new Instances(cluster).deleteAndWait('day2');
  });
});

describe('helm upgrade', () => {
  const vms = () => new Instances(cluster);
  const qemuPid = async (uid: string) => (await run('pgrep', ['-f', `uuid ${uid}`])).stdout.trim();

  it('rolls the pods to changed values while a guest keeps running in the same QEMU', async () => {
    const keeper = await vms().create('keeper');
    await vms().phase('keeper', 'Active');
    const pidBefore = await qemuPid(keeper.metadata.uid);
    const oldPods = (await pods()).map((p) => p.metadata.name);

    await helm(
      'upgrade',
      'kova',
      chart,
      ...installArgs(),
      '--reuse-values',
      '--set',
      'agent.resyncSeconds=20',
      '--set',
      'operator.logLevel=debug',
      '--wait',
    );
    await kubectl('rollout', 'status', '-n', NS, 'daemonset/kova-node-agent', '--timeout=180s');
    const now = await until(
      'the old pods to be replaced',
      async () => {
        const all = await allReady(3);
        return all.every((p) => !oldPods.includes(p.metadata.name)) && all;
      },
      180_000,
      1000,
    );
    const agent = now.find((p) => component(p) === 'node-agent') as Pod;
    expect(envOf(agent, 'KOVA_RESYNC_SECONDS')?.value).toBe('20');
    for (const op of now.filter((p) => component(p) === 'operator'))
      expect(envOf(op, 'KOVA_LOG_LEVEL')?.value).toBe('debug');

    expect(await qemuPid(keeper.metadata.uid)).toBe(pidBefore);
    const after = await vms().phase('keeper', 'Active');
    expect(await vms().httpAnswer(after)).toBe(keeper.metadata.uid);
  });
});

describe('helm uninstall', () => {
  const vms = () => new Instances(cluster);

  it('refuses while Instances exist, naming them, and leaves kova running', async () => {
    await expect(helm('uninstall', 'kova', '-n', NS, '--wait')).rejects.toThrow(
      `1 Instance(s) exist (${cluster.namespace}/keeper)`,
    );
    await allReady(3);
    await vms().phase('keeper', 'Active');
  });

  it('leaves the release `uninstalling`, and a rollback deploys it again, as the chart README says', async () => {
    expect(await helm('status', 'kova', '-n', NS)).toMatch(/STATUS: uninstalling/);
    await expect(helm('upgrade', 'kova', chart, '-n', NS, '--reuse-values')).rejects.toThrow(
      'has no deployed releases',
    );
    await helm('rollback', 'kova', '2', '-n', NS, '--wait');
    expect(await helm('status', 'kova', '-n', NS)).toMatch(/STATUS: deployed/);
    await allReady(3);
  });

  it('removes kova once Instances and Networks are gone, keeping the CRDs', async () => {
    const keeper = await vms().phase('keeper', 'Active');
    await vms().deleteAndWait('keeper');
    await kubectl('delete', 'networks', '--all', '--wait', '--timeout=120s');
    await helm('uninstall', 'kova', '-n', NS, '--wait');
    await until("kova's pods to be gone", async () => (await pods()).length === 0, 120_000);
    // The guard's Job, failed before and passed now, is deleted with its pods (in the
    // background: Helm does not wait for them).
    await until(
      "the guard's Job and pods to be gone",
      async () => (await kubectl('get', 'jobs,pods', '-n', NS, '-o', 'name')) === '',
      60_000,
    );
    expect((await kubectl('get', 'crd', '-o', 'name')).split('\n').sort()).toEqual(
      expect.arrayContaining([
        'customresourcedefinition.apiextensions.k8s.io/instances.compute.kova.dev',
        'customresourcedefinition.apiextensions.k8s.io/networks.compute.kova.dev',
      ]),
    );
    expect(await vms().domainState(NODE, keeper)).toBeUndefined();
    const links = (await run('ip', ['-o', 'link', 'show'])).stdout;
    expect(links).not.toMatch(/kova-br0/);
    expect((await run('nft', ['list', 'tables'])).stdout).not.toMatch(/kova/);
  });
});
