// Networking phase on the node: the Network's bridge must exist (a managed Network's bridge is
// created here with the gateway address and guarded), and each NIC gets a tap name derived from
// the Instance. Each tap is filtered to its own IP and MAC by libvirt (domain/xml.ts).
import type { INetwork, Interface } from '@kova/crds';
import { BuildFault } from '../errors.js';
import { run } from '../host/exec.js';
import { guardHost } from './host-guard.js';

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

/**
 * A managed Network's bridge is kova's: made here with the gateway address, and guarded so its
 * guests cannot reach the node (host-guard.ts). An unmanaged bridge is the admin's (it may be
 * the node's uplink), so kova neither makes nor guards it.
 */
export async function ensureBridge(net: INetwork): Promise<void> {
  const { bridge, managed } = net.spec;
  if (managed === false) {
    if (await bridgeExists(bridge)) return;
    throw new BuildFault(
      'BridgeMissing',
      `bridge ${bridge} of unmanaged Network ${net.metadata?.name} does not exist on this node; create it or set managed: true`,
      true,
    );
  }
  if (!(await bridgeExists(bridge))) await createBridge(net);
  await guardHost(bridge);
}

async function createBridge(net: INetwork): Promise<void> {
  const { bridge, gateway, cidr, mtu } = net.spec;
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
