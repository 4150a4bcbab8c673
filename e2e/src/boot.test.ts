// End to end on this machine: the local control plane, the operator and a node agent on the
// real libvirtd; an Instance applied as a user would becomes a QEMU guest that really booted
// with the config drive and address it was given, stops and starts on request, and leaves
// nothing behind when deleted.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { CustomObjectsApi } from '@kubernetes/client-node';
import { loadKubeConfig, logger } from '@kova/controller-kit';
import { GROUP, VERSION, type IIPAllocation, type IInstance } from '@kova/crds';
import { LocalKova, until } from '@kova/hack';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const ref = (name: string) => ({ group: GROUP, version: VERSION, plural: 'instances', namespace: 'default', name });

let kova: LocalKova;
let api: CustomObjectsApi;


const get = (name: string) => api.getNamespacedCustomObject(ref(name)).then((i) => i as IInstance, () => undefined);
const phase = (name: string, want: string) => until(`${name} in phase ${want}`, async () => {
  const i = await get(name);
  if (i?.status?.fault) throw new Error(`${name} failed: ${i.status.fault.reason}: ${i.status.fault.message}`);
  return i?.status?.phase === want ? i : undefined;
});
const setRunStrategy = (name: string, value: string) =>
  api.patchNamespacedCustomObject({ ...ref(name), body: [{ op: 'replace', path: '/spec/runStrategy', value }] });

beforeAll(async () => {
  kova = await LocalKova.start({ log: logger('e2e'), agentEnv: { KOVA_SHUTDOWN_TIMEOUT_SECONDS: '3', KOVA_RESYNC_SECONDS: '5' } });
  api = loadKubeConfig(kova.kubeconfigPath).makeApiClient(CustomObjectsApi);
  await kova.apply(join(root, 'examples', 'flavors.yaml'));
  await kova.apply(join(root, 'examples', 'network.yaml'));
}, 300_000);

afterAll(async () => {
  await kova?.stop();
  try {
    execFileSync('ip', ['link', 'delete', 'dev', 'kova-br0']);
  } catch {
    // not created
  }
});

describe('a real guest, end to end', () => {
  let inst: IInstance;
  let consoleLog: string;

  it('boots an applied Instance to Active', async () => {
    const manifest = join(tmpdir(), `kova-e2e-${process.pid}.yaml`);
    writeFileSync(manifest, readFileSync(join(root, 'hack', 'demo-instance.yaml'), 'utf8').replace('name: demo', 'name: e2e-vm'));
    await kova.apply(manifest);
    rmSync(manifest);
    inst = await phase('e2e-vm', 'Active');
    expect(inst.status?.powerState).toBe('Running');
    expect(inst.status?.nodeName).toBe(kova.nodeName);
    consoleLog = join(kova.stateDir, 'instances', inst.metadata?.uid as string, 'console.log');
  });

  it('prints on its serial console the instance-id, hostname and address it was given', async () => {
    const ip = inst.status?.interfaces?.[0]?.ip as string;
    const line = await until('the guest serial line', async () => readFileSync(consoleLog, 'utf8').match(/kova-guest: [^\r\n]*/)?.[0]);
    expect(line).toBe(`kova-guest: instance-id=${inst.metadata?.uid} hostname=e2e-vm ip=${ip}`);
  });

  it('answers HTTP on its allocated address with its instance-id', async () => {
    const ip = inst.status?.interfaces?.[0]?.ip as string;
    const body = await until('HTTP from the guest', async () => {
      try {
        return (await (await fetch(`http://${ip}/`, { signal: AbortSignal.timeout(2000) })).text()).trim();
      } catch {
        return undefined;
      }
    }, 60_000);
    expect(body).toBe(inst.metadata?.uid);
  });

  it('stops with runStrategy Halted and starts again with Always', async () => {
    await setRunStrategy('e2e-vm', 'Halted');
    const stopped = await phase('e2e-vm', 'Stopped');
    expect(stopped.status?.powerState).toBe('Shutdown');
    expect(execFileSync('virsh', ['-c', 'qemu:///system', 'domstate', inst.metadata?.uid as string], { encoding: 'utf8' }).trim()).toBe('shut off');
    await setRunStrategy('e2e-vm', 'Always');
    const again = await phase('e2e-vm', 'Active');
    expect(again.status?.powerState).toBe('Running');
  });

  it('deletes to nothing: no domain, no disks, the address released, no finalizer left', async () => {
    await api.deleteNamespacedCustomObject(ref('e2e-vm'));
    await until('the Instance to be gone', async () => !(await get('e2e-vm')), 60_000);
    expect(() => execFileSync('virsh', ['-c', 'qemu:///system', 'dominfo', inst.metadata?.uid as string], { stdio: 'pipe' })).toThrow();
    expect(existsSync(dirname(consoleLog))).toBe(false);
    const allocations = (await api.listClusterCustomObject({ group: GROUP, version: VERSION, plural: 'ipallocations' })) as { items: IIPAllocation[] };
    expect(allocations.items.filter((a) => a.spec.instance.uid === inst.metadata?.uid)).toEqual([]);
  });
});
