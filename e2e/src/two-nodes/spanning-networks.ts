// Networks that span nodes, on the lab's two nodes with real guests: one L2 segment over VXLAN
// between the nodes (HTTP both ways by IP, the guests' MTU leaving room for the overlay, flooding
// only to the nodes that need it), egress masqueraded through each guest's own node to a host
// outside the lab that this scenario makes (the distributed gateway answers locally on both
// nodes), two Networks that cannot reach each other, and nothing of a Network left on a node
// once its last Instance there is gone.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { GROUP, VERSION, type INetwork } from '@kova/crds';
import { OUTSIDE_PORT, OutsideHost, until } from '@kova/hack';
import type { Instance } from '../instances.js';
import { A, B, lab, on, two } from './context.js';

const NETWORKS = {
  east: { cidr: '10.78.0.0/24', gateway: '10.78.0.1', bridge: 'kv-east', egress: true },
  west: { cidr: '10.79.0.0/24', gateway: '10.79.0.1', bridge: 'kv-west' },
};
const net = (name: string) => ({ group: GROUP, version: VERSION, plural: 'networks', name });

/** What guest `from` got fetching http://ADDRESS/ itself (the test guest's /cgi-bin/fetch). */
async function fetchFrom(from: Instance, address: string): Promise<string> {
  const node = from.status?.nodeName as string;
  const ip = from.status?.interfaces?.[0]?.ip as string;
  const url = `http://${ip}/cgi-bin/fetch?${address}`;
  return (await two().cluster.onNode(node, ['curl', '-sf', '--max-time', '10', url])).trim();
}

const ipOf = (i: Instance) => i.status?.interfaces?.[0]?.ip as string;
const underlay = (node: string) => lab().lab.node(node).underlayIp;

/** The peers node `node` floods the Network's broadcasts to (its all-zero FDB entries). */
async function floodsTo(node: string, vni: number): Promise<string[]> {
  const out = await two().cluster.onNode(node, ['bridge', '-j', 'fdb', 'show', 'dev', `kvx${vni}`]);
  return (JSON.parse(out) as { mac: string; dst?: string }[])
    .filter((e) => e.mac === '00:00:00:00:00:00' && e.dst)
    .map((e) => e.dst as string);
}

/** The MTU the guest found on its interface, as it said on its serial console. */
function guestMtu(inst: Instance): Promise<string> {
  const node = inst.status?.nodeName as string;
  const log = `${lab().lab.node(node).stateDir}/instances/${inst.metadata.uid}/console.log`;
  return until(`${inst.metadata.name}'s MTU on its console`, async () => {
    const text = await two()
      .cluster.onNode(node, ['cat', log])
      .catch(() => '');
    return /kova-guest: mtu=(\d+)/.exec(text)?.[1];
  });
}

async function links(node: string): Promise<string> {
  return two().cluster.onNode(node, ['ip', '-o', 'link', 'show']);
}

export function spanningNetworks(): void {
  describe('Networks that span nodes', () => {
    let outside: OutsideHost;
    let e1: Instance;
    let e2: Instance;
    let w1: Instance;
    let vni: number;

    beforeAll(async () => {
      const { cluster, vms } = two();
      for (const [name, spec] of Object.entries(NETWORKS))
        await cluster.api.createClusterCustomObject({
          ...net(name),
          body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'Network', metadata: { name }, spec },
        });
      outside = await OutsideHost.start(lab().lab);
      await vms.create('east-1', { ...on(A), networks: [{ network: 'east' }] });
      await vms.create('east-2', { ...on(B), networks: [{ network: 'east' }] });
      await vms.create('west-1', { ...on(A), networks: [{ network: 'west' }] });
      const vm = (n: string) => vms.phase(n, 'Active', 150_000);
      [e1, e2, w1] = [await vm('east-1'), await vm('east-2'), await vm('west-1')];
      // Active is the domain running; the guest answers once it has booted.
      for (const inst of [e1, e2, w1]) await vms.httpAnswer(inst);
      const east = (await cluster.api.getClusterCustomObject(net('east'))) as INetwork;
      vni = east.status?.vni as number;
    }, 240_000);

    afterAll(async () => {
      const { cluster, vms } = two();
      for (const n of ['east-1', 'east-2', 'west-1'])
        await vms.deleteAndWait(n).catch(() => undefined);
      for (const name of Object.keys(NETWORKS))
        await cluster.api.deleteClusterCustomObject(net(name)).catch(() => undefined);
      outside?.stop();
    }, 120_000);

    it('#13.2 joins guests of one Network on two nodes: HTTP both ways by IP, VNI and both tunnel endpoints in its status, MTU 1450 in the guests', async () => {
      expect([e1.status?.nodeName, e2.status?.nodeName]).toEqual([A, B]);
      expect(await fetchFrom(e1, ipOf(e2))).toBe(e2.metadata.uid);
      expect(await fetchFrom(e2, ipOf(e1))).toBe(e1.metadata.uid);
      const east = (await two().cluster.api.getClusterCustomObject(net('east'))) as INetwork;
      expect(vni).toBeGreaterThan(0);
      expect(east.status?.nodes).toEqual([
        { name: A, tunnelAddress: underlay(A) },
        { name: B, tunnelAddress: underlay(B) },
      ]);
      expect(await floodsTo(A, vni)).toEqual([underlay(B)]);
      expect(await floodsTo(B, vni)).toEqual([underlay(A)]);
      // More than one full-size frame each way: the guests' MTU leaves room for VXLAN.
      expect(await fetchFrom(e1, `${ipOf(e2)}/big`)).toBe('k'.repeat(3000));
      expect(await fetchFrom(e2, `${ipOf(e1)}/big`)).toBe('k'.repeat(3000));
      for (const inst of [e1, e2]) expect(await guestMtu(inst)).toBe('1450');
    });

    it('#13.2 answers for the gateway on each node alone: no node learns the gateway MAC from the overlay', async () => {
      const { cluster } = two();
      const [bridge] = JSON.parse(await cluster.onNode(A, ['ip', '-j', 'link', 'show', 'kv-east']));
      const gatewayMac = (bridge as { address: string }).address;
      expect(await cluster.onNode(B, ['ip', '-j', 'link', 'show', 'kv-east'])).toContain(
        gatewayMac,
      );
      // Both guests used their gateway (egress above and below): its MAC stays off the tunnel.
      for (const inst of [e1, e2]) await fetchFrom(inst, `${outside.ip}:${OUTSIDE_PORT}`);
      for (const node of [A, B]) {
        const fdb = await cluster.onNode(node, ['bridge', '-j', 'fdb', 'show', 'dev', `kvx${vni}`]);
        expect(JSON.parse(fdb).map((e: { mac: string }) => e.mac)).not.toContain(gatewayMac);
      }
    });

    it("#13.3 lets a Network with egress reach outside, masqueraded by each guest's own node; a Network without egress stays in", async () => {
      const seen = `${outside.ip}:${OUTSIDE_PORT}`;
      expect(await fetchFrom(e1, seen)).toBe(`seen ${underlay(A)}`);
      expect(await fetchFrom(e2, seen)).toBe(`seen ${underlay(B)}`);
      expect(await fetchFrom(w1, seen)).toBe('fetch-failed');
    });

    it('#13.3 keeps two Networks apart, on one node and across nodes, both ways', async () => {
      expect(await fetchFrom(w1, ipOf(e1))).toBe('fetch-failed');
      expect(await fetchFrom(w1, ipOf(e2))).toBe('fetch-failed');
      expect(await fetchFrom(e1, ipOf(w1))).toBe('fetch-failed');
    });

    it("#13.2 follows the nodes: once B's last guest of the Network goes, A stops flooding to B and B removes the Network's links", async () => {
      await two().vms.deleteAndWait('east-2');
      await until(
        'A to stop flooding to B',
        async () => (await floodsTo(A, vni)).length === 0,
        30_000,
        250,
      );
      await until(
        "the Network's bridge and VXLAN device gone from B",
        async () => !new RegExp(`\\b(kv-east|kvx${vni})\\b`).test(await links(B)),
        30_000,
        250,
      );
      const east = (await two().cluster.api.getClusterCustomObject(net('east'))) as INetwork;
      expect(east.status?.nodes).toEqual([{ name: A, tunnelAddress: underlay(A) }]);
      expect(await fetchFrom(e1, `${outside.ip}:${OUTSIDE_PORT}`)).toBe(`seen ${underlay(A)}`);
    });
  });
}
