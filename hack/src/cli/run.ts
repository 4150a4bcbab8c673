// `npm start`: a local kova to try. Starts the control plane, the operator and a node agent
// (restarted when they crash, as the cluster would), boots the demo Instance while showing each
// phase as it happens, proves the guest came up with its address, and on Ctrl-C, SIGTERM or a
// closed terminal (SIGHUP) deletes every Instance and stops everything (teardown.ts).
import { CustomObjectsApi } from '@kubernetes/client-node';
import { loadKubeConfig, logger } from '@kova/controller-kit';
import { GROUP, VERSION, type IInstance } from '@kova/crds';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { kubectlPath } from '../control-plane.js';
import { LocalKova } from '../local-kova.js';
import { hostNow, type HostBefore, type Leftover } from './footprint.js';
import { LOCAL_RUN } from './settings.js';
import { teardown } from './teardown.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const log = logger('kova-run');
const out = (line = '') => process.stdout.write(`${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// A closed terminal (SIGHUP) fails every later write with EIO; unhandled, that would end the
// process in the middle of its teardown. The lines are lost with the terminal either way.
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);

let starting: Promise<LocalKova> | undefined;
let before: HostBefore = { bridges: new Set(), tables: new Set(), ipForward: true };
let stopping = false;

/** Deletes every Instance (the agent removes domains, disks and taps), then everything else. */
async function stop(why: string, code: number): Promise<void> {
  // Once is enough: npm forwards the terminal's SIGINT, so one Ctrl-C arrives here twice.
  if (stopping) return;
  stopping = true;
  out(`\nStopping (${why}): deleting every Instance, then every process…`);
  // A signal during start-up waits for it; a start that failed has already cleaned up.
  const kova = await starting?.catch(() => undefined);
  let left: Leftover[] = [];
  try {
    if (kova) left = await teardown(kova, { log, say: out, before });
  } catch (err) {
    log.error('teardown failed', { error: err as Error });
    out('Stopped, but the teardown failed (see the log): check `virsh list --all` and `ip link`.');
    process.exit(1);
  }
  if (left.length === 0)
    out('Stopped; no domain, tap, bridge, process or temporary directory of this run is left.');
  else out(`Stopped, but these are left: ${left.map((l) => `${l.kind} ${l.name}`).join('; ')}`);
  process.exit(left.length ? 1 : code);
}

async function main(): Promise<void> {
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const)
    process.on(signal, () => void stop(signal, 0));
  out('Starting kova: control plane, operator, node agent…');
  before = await hostNow();
  starting = LocalKova.start({ log, ...LOCAL_RUN });
  const kova = await starting;
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
  out('  kubectl kova restart demo      # day-2: restart, stop, console… (docs/actions.md)');
  out('Ctrl-C deletes every Instance and stops everything.');
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

main().catch(async (err: Error) => {
  // Once stopping, the teardown itself makes the demo's API calls fail: that is no start failure.
  if (stopping) return;
  log.error('kova did not start', { error: err });
  await stop('start-up failed', 1);
});
