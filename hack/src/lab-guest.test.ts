// One real guest on a lab node, end to end: a control plane and operator of their own (no agent
// on the host), one lab node with its own libvirtd and agent; an Instance applied becomes Active
// on that node, its domain runs in the node's libvirtd and not the host's, and it answers HTTP
// from inside the node's namespaces (its bridge exists only there).
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { loadKubeConfig, logger } from '@kova/controller-kit';
import { GROUP, VERSION, type IInstance } from '@kova/crds';
import { execFile } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { applyFile } from './apply-manifests.js';
import { NodeLab } from './lab.js';
import { LocalKova } from './local-kova.js';
import { until } from './until.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const run = promisify(execFile);
const log = logger('lab-guest-test');
const NS = 'lab-guest';
const NODE = 'lab-g1';

let kova: LocalKova;
let lab: NodeLab;
let api: CustomObjectsApi;
const ref = (name: string) => ({
  group: GROUP,
  version: VERSION,
  plural: 'instances',
  namespace: NS,
  name,
});

/** What a reader needs when the guest does not answer: the node's network and the console. */
async function diagnostics(uid: string): Promise<string> {
  const parts: string[] = [];
  for (const cmd of [
    'ip -br addr',
    'ip route',
    'ip neigh',
    'iptables-save',
    'nft list ruleset',
    'ebtables -L',
    `cat /var/log/libvirt/qemu/${uid}.log`,
    `cat ${lab.node(NODE).stateDir}/instances/${uid}/console.log`,
    `virsh -c qemu:///system dumpxml ${uid}`,
  ])
    parts.push(
      `$ ${cmd}\n${await lab.exec(NODE, ['bash', '-c', `${cmd} 2>&1 | tail -60`]).then(
        (r) => r.stdout,
        (e: Error) => e.message,
      )}`,
    );
  return parts.join('\n');
}

beforeAll(async () => {
  kova = await LocalKova.start({ log, agents: [] });
  const kc = loadKubeConfig(kova.kubeconfigPath);
  api = kc.makeApiClient(CustomObjectsApi);
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: NS } } });
  for (const f of ['flavors.yaml', 'network.yaml'])
    await applyFile(join(root, 'examples', f), {
      kubeconfigPath: kova.kubeconfigPath,
      namespace: NS,
    });
  lab = await NodeLab.start({
    log,
    kubeconfigPath: kova.kubeconfigPath,
    nodes: [NODE],
    // As LocalKova: the agent's KVM probe boots a kernel, the test guest's (none in /boot here).
    agentEnv: {
      KOVA_SHUTDOWN_TIMEOUT_SECONDS: '2',
      KOVA_KVM_PROBE_KERNEL: join(kova.guestDir, 'vmlinuz'),
    },
  });
}, 120_000);

afterAll(async () => {
  // The node's guests, bridge and rules all live in its namespaces: stopping it removes them.
  await lab?.stop();
  await kova?.stop();
});

it('boots an Instance on a lab node: Active there, its domain in that node only, HTTP from inside the node', async () => {
  await api.createNamespacedCustomObject({
    ...ref('guest-1'),
    body: {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: 'Instance',
      metadata: { name: 'guest-1', namespace: NS },
      spec: { flavor: 'm1.nano', image: 'kova-guest', networks: [{ network: 'default' }] },
    },
  });
  const inst = await until(
    'guest-1 Active',
    async () => {
      const i = (await api.getNamespacedCustomObject(ref('guest-1'))) as IInstance;
      return i.status?.phase === 'Active' && i;
    },
    150_000,
    500,
  );
  const uid = inst.metadata?.uid as string;
  expect(inst.status?.nodeName).toBe(NODE);
  const state = await lab.exec(NODE, ['virsh', '-c', 'qemu:///system', 'domstate', uid]);
  expect(state.stdout.trim()).toBe('running');
  await expect(run('virsh', ['-c', 'qemu:///system', 'domstate', uid])).rejects.toThrow();
  const ip = inst.status?.interfaces?.[0]?.ip as string;
  const answer = await until(
    `HTTP from guest-1 at ${ip} inside ${NODE}`,
    async () =>
      (
        await lab
          .exec(NODE, ['curl', '-sf', '--max-time', '2', `http://${ip}/`])
          .catch(() => ({ stdout: '' }))
      ).stdout.trim() || undefined,
    90_000,
    250,
  ).catch(async (err: Error) => {
    throw new Error(`${err.message}\n${await diagnostics(uid)}`);
  });
  expect(answer).toBe(uid);
  // Its bridge is the node's own, made by the node's agent in the node's namespace.
  const links = await lab.exec(NODE, ['ip', '-o', 'link', 'show', 'kova-br0']);
  expect(links.stdout).toContain('kova-br0');
}, 300_000);
