// Networking phase on the node: the Network's bridge must exist (a managed Network's bridge is
// created here with the gateway address), and each NIC gets a tap name derived from the Instance.
import type { INetwork, Interface } from '@kova/crds';
import { BuildFault } from '../errors.js';
import { run } from '../host/exec.js';

export interface Nic extends Interface {
  bridge: string;
  tap: string;
  mtu: number;
}

/** Linux allows 15 characters: "kv" + 12 hex of the UID + the NIC index. */
export function tapName(uid: string, index: number): string {
  return `kv${uid.replace(/-/g, '').slice(0, 12)}${index.toString(16)}`;
}

async function bridgeExists(name: string): Promise<boolean> {
  try {
    await run('ip', ['-o', 'link', 'show', 'dev', name]);
    return true;
  } catch {
    return false;
  }
}

export async function ensureBridge(net: INetwork): Promise<void> {
  const { bridge, managed, gateway, cidr, mtu } = net.spec;
  if (await bridgeExists(bridge)) return;
  if (managed === false) {
    throw new BuildFault(
      'BridgeMissing',
      `bridge ${bridge} of unmanaged Network ${net.metadata?.name} does not exist on this node; create it or set managed: true`,
      true,
    );
  }
  try {
    await run('ip', ['link', 'add', 'name', bridge, 'type', 'bridge']);
  } catch (err) {
    if (!(await bridgeExists(bridge)))
      throw new BuildFault(
        'BridgeCreateFailed',
        `could not create bridge ${bridge}: ${(err as Error).message}`,
        true,
      );
  }
  const prefix = cidr.split('/')[1];
  await run('ip', ['addr', 'replace', `${gateway}/${prefix}`, 'dev', bridge]);
  await run('ip', ['link', 'set', 'dev', bridge, 'mtu', String(mtu ?? 1500), 'up']);
}

export async function removeBridge(name: string): Promise<void> {
  if (await bridgeExists(name)) await run('ip', ['link', 'delete', 'dev', name]);
}

export async function plugNetworks(
  uid: string,
  interfaces: Interface[],
  networkOf: (name: string) => INetwork | undefined,
): Promise<Nic[]> {
  const nics: Nic[] = [];
  for (const [i, iface] of interfaces.entries()) {
    const net = networkOf(iface.network);
    if (!net)
      throw new BuildFault('NetworkNotFound', `Network ${iface.network} does not exist`, false);
    await ensureBridge(net);
    nics.push({
      ...iface,
      bridge: net.spec.bridge,
      tap: tapName(uid, i),
      mtu: net.spec.mtu ?? 1500,
    });
  }
  return nics;
}
