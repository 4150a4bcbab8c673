// `npm start`: a local kova to try. Starts the control plane, the operator and a node agent,
// boots the demo Instance while showing each phase as it happens, proves the guest came up
// with its address, and tears everything down on Ctrl-C.
import { CustomObjectsApi } from '@kubernetes/client-node';
import { apiStatus, loadKubeConfig, logger } from '@kova/controller-kit';
import { GROUP, VERSION, type IInstance } from '@kova/crds';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { kubectlPath } from '../control-plane.js';
import { LocalKova } from '../local-kova.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const log = logger('kova-run');
const out = (line = '') => process.stdout.write(`${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let kova: LocalKova | undefined;
let stopping = false;

/** Deletes the demo Instance (the agent removes its domain, disks and tap), then everything else. */
async function stop(code: number): Promise<never> {
  if (stopping) return new Promise<never>(() => undefined);
  stopping = true;
  out('\nStopping: deleting the demo Instance, then every process…');
  let clean = true;
  if (kova) {
    const api = loadKubeConfig(kova.kubeconfigPath).makeApiClient(CustomObjectsApi);
    clean = await deleteDemo(api).then(
      () => true,
      (err: Error) => {
        log.error('could not delete the demo Instance', { error: err });
        return false;
      },
    );
    await kova.stop();
  }
  await promisify(execFile)('ip', ['link', 'delete', 'dev', 'kova-br0']).catch(() => undefined);
  out(
    clean
      ? 'Stopped; no domain, bridge, process or temporary directory is left.'
      : 'Stopped, but the demo domain may remain: check `virsh list --all`.',
  );
  process.exit(clean ? code : 1);
}

async function main(): Promise<void> {
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));
  out('Starting kova: control plane, operator, node agent…');
  kova = await LocalKova.start({ log, agentEnv: { KOVA_SHUTDOWN_TIMEOUT_SECONDS: '5' } });
  const api = loadKubeConfig(kova.kubeconfigPath).makeApiClient(CustomObjectsApi);

  for (const f of ['flavors.yaml', 'network.yaml']) await kova.apply(join(root, 'examples', f));
  await kova.apply(join(root, 'hack', 'demo-instance.yaml'));
  out(`Booting Instance default/demo on hypervisor ${kova.nodeName}:`);
  const inst = await followPhases(api);
  const ip = inst.status?.interfaces?.[0]?.ip as string;
  const serial = await consoleLine(
    join(kova.stateDir, 'instances', inst.metadata?.uid as string, 'console.log'),
  );
  out(`  serial console: ${serial}`);
  out(`  http://${ip}/ answers: ${await httpGet(`http://${ip}/`)}`);
  out('');
  out('kova is running. In another shell:');
  out(`  export KUBECONFIG=${kova.kubeconfigPath}`);
  out(`  export PATH=${dirname(kubectlPath())}:$PATH`);
  out('  kubectl get inst,hv            # the Instance and this hypervisor');
  out('  kubectl get kova -A            # every kova object');
  out('  kubectl describe inst demo     # conditions and events');
  out('Press Ctrl-C to stop everything.');
}

/** Prints each phase with the time it took, until Active (or a fault). */
async function followPhases(api: CustomObjectsApi): Promise<IInstance> {
  const start = Date.now();
  let phase = '';
  let since = start;
  for (;;) {
    const inst = (await api.getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: 'instances',
      namespace: 'default',
      name: 'demo',
    })) as IInstance;
    const now = inst.status?.phase ?? 'Pending';
    if (now !== phase) {
      if (phase) out(`  ✓ ${phase.padEnd(20)} ${((Date.now() - since) / 1000).toFixed(2)} s`);
      phase = now;
      since = Date.now();
    }
    if (inst.status?.fault)
      throw new Error(`boot failed: ${inst.status.fault.reason}: ${inst.status.fault.message}`);
    if (phase === 'Active') {
      out(
        `  ✓ Active after ${((Date.now() - start) / 1000).toFixed(2)} s — ${inst.status?.interfaces?.[0]?.ip} on ${inst.status?.nodeName}, power ${inst.status?.powerState}`,
      );
      return inst;
    }
    await sleep(50);
  }
}

async function consoleLine(path: string, timeoutMs = 120_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const text = await readFile(path, 'utf8').catch(() => '');
    const m = text.match(/kova-guest: [^\r\n]*/);
    if (m) return m[0];
    await sleep(200);
  }
  throw new Error(`the guest printed nothing to ${path} within ${timeoutMs / 1000} s`);
}

async function httpGet(url: string, timeoutMs = 30_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return (await (await fetch(url, { signal: AbortSignal.timeout(2000) })).text()).trim();
    } catch (err) {
      if (Date.now() > deadline)
        throw new Error(`${url} did not answer: ${(err as Error).message}`);
      await sleep(250);
    }
  }
}

async function deleteDemo(api: CustomObjectsApi): Promise<void> {
  const ref = {
    group: GROUP,
    version: VERSION,
    plural: 'instances',
    namespace: 'default',
    name: 'demo',
  };
  await api.deleteNamespacedCustomObject(ref).catch((err) => {
    if (apiStatus(err) !== 404) throw err;
  });
  for (let i = 0; i < 600; i++) {
    const gone = await api.getNamespacedCustomObject(ref).then(
      () => false,
      (err) => apiStatus(err) === 404,
    );
    if (gone) return;
    await sleep(100);
  }
  throw new Error('the demo Instance was not deleted within 60 s');
}

main().catch(async (err: Error) => {
  log.error('kova did not start', { error: err });
  await stop(1);
});
