// Guests against the real kernel: network namespaces play the guests, each behind a veth named
// as the agent names a domain's tap, on a kova bridge, under kova's nftables rules the agent
// applies for two Networks (one with egress) and for each guest NIC (anti-spoofing). Another namespace plays what lies beyond the node (pods, services, the internet).
// Only addresses inside these namespaces are used.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { logger } from '@kova/controller-kit';
import type { INetwork } from '@kova/crds';
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { usableNetworkStatus } from '../test-support.js';
import { tapName } from './names.js';
import { NodeNetworks } from './node-networks.js';
import type { GuestNic } from './ruleset.js';

const BRIDGE = 'kvsect0';
const EGRESS_BRIDGE = 'kvsect1';
const OUTSIDE_LINK = 'kvsecto0';
const PORT = 7000;
const guests = {
  a: {
    ns: `kova-sec-a-${process.pid}`,
    uid: randomUUID(),
    ip: '10.231.7.10',
    mac: 'fa:16:3e:e7:00:0a',
  },
  b: {
    ns: `kova-sec-b-${process.pid}`,
    uid: randomUUID(),
    ip: '10.231.7.11',
    mac: 'fa:16:3e:e7:00:0b',
  },
  /** On the second Network, which has egress. */
  c: {
    ns: `kova-sec-c-${process.pid}`,
    uid: randomUUID(),
    ip: '10.231.9.10',
    mac: 'fa:16:3e:e7:00:1a',
  },
};
const outside = { ns: `kova-sec-out-${process.pid}`, ip: '10.231.8.2' };
const networks: Record<string, INetwork> = {
  'sec-test': {
    apiVersion: 'compute.kova.dev/v1alpha1',
    kind: 'Network',
    metadata: { name: 'sec-test' },
    spec: { cidr: '10.231.7.0/24', gateway: '10.231.7.1', bridge: BRIDGE },
    status: usableNetworkStatus(7001),
  },
  'sec-egress': {
    apiVersion: 'compute.kova.dev/v1alpha1',
    kind: 'Network',
    metadata: { name: 'sec-egress' },
    spec: { cidr: '10.231.9.0/24', gateway: '10.231.9.1', bridge: EGRESS_BRIDGE, egress: true },
    status: usableNetworkStatus(7002),
  },
};
const networkOf = (g: keyof typeof guests) => (g === 'c' ? 'sec-egress' : 'sec-test');
let inUse = new Set(Object.keys(networks));
/** The guest NICs the node knows (the agent's: its Instances' interfaces). */
let nics: GuestNic[] = [];
/** The node side of Networks as the agent runs it, with no tunnel: a node alone. */
const node = new NodeNetworks({
  nodeName: 'sec-node',
  tunnel: undefined,
  networks: { get: (n) => networks[n] },
  inUse: () => inUse,
  nics: () => nics,
  logger: logger('isolation-test'),
});
let ipForwardBefore: string;

const sh = (cmd: string, ...args: string[]) =>
  execFileSync(cmd, args, { encoding: 'utf8', stdio: 'pipe' });
const quietly = (fn: () => unknown) => {
  try {
    fn();
  } catch {
    // already gone
  }
};

/** A TCP connect from inside a namespace: true when the handshake completes within 2 s. */
function connects(ns: string, host: string, port: number, from?: string): Promise<boolean> {
  const script = `const s=require('net').connect({host:'${host}',port:${port}${from ? `,localAddress:'${from}'` : ''}});
s.setTimeout(2000,()=>process.exit(1));s.on('connect',()=>process.exit(0));s.on('error',()=>process.exit(1));`;
  return new Promise((resolve) =>
    execFile('ip', ['netns', 'exec', ns, process.execPath, '-e', script], (err) => resolve(!err)),
  );
}

/** A TCP server on 0.0.0.0 inside a namespace that greets every connection. */
function serveIn(ns: string): Promise<ChildProcess> {
  const script = `require('net').createServer(s=>{s.on('error',()=>{});s.end('hello from '+s.remoteAddress.replace('::ffff:',''))}).listen(${PORT},'0.0.0.0',()=>console.log('ready'))`;
  const proc = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', script]);
  return new Promise((resolve, reject) => {
    proc.stdout.once('data', () => resolve(proc));
    proc.once('exit', (code) => reject(new Error(`server in ${ns} exited with ${code}`)));
  });
}

const servers: ChildProcess[] = [];
let hostServer: Server;

/** A namespace with one veth end named `eth0`, the other end `hostEnd` in the host. */
function namespaceWithVeth(ns: string, hostEnd: string, ip: string, prefix: number, mac?: string) {
  sh('ip', 'netns', 'add', ns);
  sh('ip', 'link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
  inNsRun(ns, 'link', 'set', 'lo', 'up');
  if (mac) inNsRun(ns, 'link', 'set', 'eth0', 'address', mac);
  inNsRun(ns, 'addr', 'add', `${ip}/${prefix}`, 'dev', 'eth0');
  inNsRun(ns, 'link', 'set', 'eth0', 'up');
}
function inNsRun(ns: string, ...args: string[]) {
  return sh('ip', '-n', ns, ...args);
}

beforeAll(async () => {
  ipForwardBefore = readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim();
  for (const [key, g] of Object.entries(guests)) {
    const net = networks[networkOf(key as keyof typeof guests)] as INetwork;
    const tap = tapName(g.uid, 0);
    nics = [...nics, { tap, mac: g.mac, ip: g.ip }];
    // The agent's networking step: the bridge, its gateway address and kova's rules.
    const plugged = await node.plug(
      g.uid,
      [
        {
          network: net.metadata?.name as string,
          ip: g.ip,
          mac: g.mac,
          gateway: net.spec.gateway,
          prefix: 24,
        },
      ],
      (n) => networks[n],
    );
    expect(plugged[0]).toMatchObject({ bridge: net.spec.bridge, tap, mtu: 1450 });
    namespaceWithVeth(g.ns, tap, g.ip, 24, g.mac);
    inNsRun(g.ns, 'route', 'add', 'default', 'via', net.spec.gateway);
    sh('ip', 'link', 'set', tap, 'master', net.spec.bridge, 'up');
  }
  // Beyond the node: routed, and it knows its way back only to the node (as the internet does).
  namespaceWithVeth(outside.ns, OUTSIDE_LINK, outside.ip, 24);
  sh('ip', 'addr', 'add', '10.231.8.1/24', 'dev', OUTSIDE_LINK);
  sh('ip', 'link', 'set', OUTSIDE_LINK, 'up');
  inNsRun(outside.ns, 'route', 'add', '10.231.7.0/24', 'via', '10.231.8.1');
  servers.push(await serveIn(guests.b.ns), await serveIn(guests.c.ns), await serveIn(outside.ns));
  hostServer = createServer((s) => s.on('error', () => undefined).end('host'));
  await new Promise<void>((r) => hostServer.listen(0, '0.0.0.0', r));
}, 60_000);

afterAll(async () => {
  for (const s of servers) s.kill();
  hostServer?.close();
  for (const g of Object.values(guests)) quietly(() => sh('ip', 'netns', 'del', g.ns));
  quietly(() => sh('ip', 'netns', 'del', outside.ns));
  inUse = new Set();
  nics = [];
  await node.sync();
  writeFileSync('/proc/sys/net/ipv4/ip_forward', ipForwardBefore);
});

describe('guest network isolation', () => {
  it('#12.15 drops a guest frame with a spoofed source IP or MAC, and passes the genuine one', async () => {
    const { a, b } = guests;
    expect(await connects(a.ns, b.ip, PORT)).toBe(true);
    inNsRun(a.ns, 'addr', 'add', '10.231.7.12/24', 'dev', 'eth0');
    expect(await connects(a.ns, b.ip, PORT, '10.231.7.12')).toBe(false);
    inNsRun(a.ns, 'link', 'set', 'eth0', 'address', 'fa:16:3e:e7:00:0c');
    expect(await connects(a.ns, b.ip, PORT)).toBe(false);
    inNsRun(a.ns, 'link', 'set', 'eth0', 'address', a.mac);
    expect(await connects(a.ns, b.ip, PORT)).toBe(true);
  });

  it('#12.15 lets nothing out of a tap named as kova names them that no Instance here has', async () => {
    const stray = { ns: `kova-sec-x-${process.pid}`, tap: tapName(randomUUID(), 0) };
    namespaceWithVeth(stray.ns, stray.tap, '10.231.7.20', 24, 'fa:16:3e:e7:00:14');
    try {
      sh('ip', 'link', 'set', stray.tap, 'master', BRIDGE, 'up');
      expect(await connects(stray.ns, guests.b.ip, PORT)).toBe(false);
      expect(await connects(guests.a.ns, guests.b.ip, PORT)).toBe(true);
    } finally {
      quietly(() => sh('ip', 'netns', 'del', stray.ns));
    }
  });

  it('#12.15 keeps a guest off a host service listening on 0.0.0.0, while the host reaches the guest', async () => {
    const { port } = hostServer.address() as AddressInfo;
    expect(await connects(guests.a.ns, '10.231.7.1', port)).toBe(false);
    const reply = await new Promise<string>((resolve, reject) => {
      const s = createConnection({ host: guests.b.ip, port: PORT });
      s.setTimeout(2000, () => reject(new Error('host could not reach the guest')));
      s.on('data', (d) => resolve(String(d)));
      s.on('error', reject);
    });
    expect(reply).toMatch(/^hello from /);
  });

  it('#12.15 keeps a guest from opening connections beyond the node, and the outside from opening connections to it', async () => {
    expect(await connects(guests.a.ns, outside.ip, PORT)).toBe(false);
    expect(await connects(outside.ns, guests.b.ip, PORT)).toBe(false);
  });
});

describe('egress and isolation between Networks', () => {
  it('#13.3 lets a guest of a Network with egress reach the outside, masqueraded to the node', async () => {
    const seen = await new Promise<string>((resolve, reject) => {
      const script = `const s=require('net').connect({host:'${outside.ip}',port:${PORT}});s.setTimeout(2000,()=>process.exit(1));s.on('data',d=>{process.stdout.write(String(d));process.exit(0)});s.on('error',()=>process.exit(1));`;
      execFile('ip', ['netns', 'exec', guests.c.ns, process.execPath, '-e', script], (err, out) =>
        err
          ? reject(new Error(`guest c could not reach the outside: ${err.message}`))
          : resolve(out),
      );
    });
    expect(seen).toBe('hello from 10.231.8.1');
  });

  it('#13.3 keeps two Networks on one node from reaching each other, both ways', async () => {
    expect(await connects(guests.a.ns, guests.c.ip, PORT)).toBe(false);
    expect(await connects(guests.c.ns, guests.b.ip, PORT)).toBe(false);
    expect(await connects(guests.a.ns, guests.b.ip, PORT)).toBe(true);
  });

  it('#13.3 keeps guarding a guest whose Network left the node, and removes bridges and rules once no guest is left', async () => {
    const bridges = () => sh('ip', '-o', 'link', 'show', 'type', 'bridge');
    inUse = new Set(['sec-test']);
    await node.sync();
    // The egress Network's guest is still plugged: its bridge stays, guarded, without egress.
    expect(bridges()).toContain(EGRESS_BRIDGE);
    const rules = sh('nft', 'list', 'table', 'inet', 'kova');
    expect(rules).toContain(`"${EGRESS_BRIDGE}"`);
    expect(rules).not.toContain('10.231.9.0/24');
    const { port } = hostServer.address() as AddressInfo;
    expect(await connects(guests.c.ns, '10.231.9.1', port)).toBe(false);
    expect(await connects(guests.c.ns, outside.ip, PORT)).toBe(false);
    for (const g of Object.values(guests))
      quietly(() => sh('ip', 'link', 'del', tapName(g.uid, 0)));
    inUse = new Set();
    nics = [];
    await node.sync();
    expect(bridges()).not.toMatch(/kvsect/);
    expect(sh('nft', 'list', 'tables')).not.toMatch(/\bkova\b/);
  });
});
