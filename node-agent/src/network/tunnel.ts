// The node's tunnel endpoint: the underlay address other nodes send its VXLAN traffic to, and
// the MTU of the link carrying it. KOVA_TUNNEL_ADDRESS names it (the chart passes the node's
// InternalIP); otherwise it is the source address of the node's route to the API server. A node
// that reaches the API server over loopback is alone: it gets no overlay.
import { lookup } from 'node:dns/promises';
import { run } from '../host/exec.js';
import { mtuOfAddress } from './links.js';

export interface TunnelEndpoint {
  address: string;
  mtu: number;
}

async function routeSource(host: string): Promise<string | undefined> {
  const { address } = await lookup(host, { family: 4 });
  const out = await run('ip', ['-j', 'route', 'get', address]);
  return (JSON.parse(out) as { prefsrc?: string }[])[0]?.prefsrc;
}

export async function tunnelEndpoint(
  configured: string | undefined,
  apiServer: string,
): Promise<TunnelEndpoint | undefined> {
  const address = configured || (await routeSource(new URL(apiServer).hostname));
  if (!address || address.startsWith('127.')) return undefined;
  return { address, mtu: (await mtuOfAddress(address)) ?? 1500 };
}
