// Keeps guests off the node itself. The node owns each managed bridge's gateway address, so
// without this a guest reaches every host service bound to 0.0.0.0 (the agent's 8081, the
// kubelet, NodePorts) and, with forwarding on, the pod and service networks behind the node.
// kova's own chains, KOVA-INPUT and KOVA-FORWARD (IPv4 and IPv6), jumped to first from INPUT
// and FORWARD, drop anything a guest starts towards the node or beyond its bridge; replies to
// connections the node or the outside opened (the e2e suites curl guests) stay established.
// Guest to guest on one bridge is bridged, not routed, and is left alone here (the per-NIC
// anti-spoofing filter polices it). A Network that may reach further is for a later issue.
import { access } from 'node:fs/promises';
import { BuildFault } from '../errors.js';
import { run } from '../host/exec.js';

export const GUARD_CHAINS = { INPUT: 'KOVA-INPUT', FORWARD: 'KOVA-FORWARD' } as const;

/** The rules one bridge gets, per chain: established replies pass, the rest is dropped. */
export function guardRules(bridge: string): { chain: string; rule: string[] }[] {
  const established = ['-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'RETURN'];
  const fromGuests = ['-i', bridge];
  const routedOut = ['-i', bridge, '!', '-o', bridge];
  return [
    { chain: GUARD_CHAINS.INPUT, rule: [...fromGuests, ...established] },
    { chain: GUARD_CHAINS.INPUT, rule: [...fromGuests, '-j', 'DROP'] },
    { chain: GUARD_CHAINS.FORWARD, rule: [...routedOut, ...established] },
    { chain: GUARD_CHAINS.FORWARD, rule: [...routedOut, '-j', 'DROP'] },
  ];
}

// Concurrent plugs would both find a rule missing and both append it: one at a time.
let serial: Promise<unknown> = Promise.resolve();

/** Installs the guard for a bridge kova manages; idempotent, and repaired on every plug. */
export function guardHost(bridge: string): Promise<void> {
  const next = serial.then(() => install(bridge));
  serial = next.catch(() => undefined);
  return next.catch((err) => {
    throw new BuildFault(
      'HostGuardFailed',
      `could not install the host guard for bridge ${bridge} (iptables and ip6tables must work on the node): ${(err as Error).message}`,
      true,
      { cause: err },
    );
  });
}

async function install(bridge: string): Promise<void> {
  // A kernel without IPv6 has nothing to guard there (and no ip6tables tables to write).
  const ipv6 = await access('/proc/sys/net/ipv6').then(
    () => true,
    () => false,
  );
  for (const tool of ipv6 ? ['iptables', 'ip6tables'] : ['iptables']) {
    for (const [parent, chain] of Object.entries(GUARD_CHAINS)) {
      const present = await succeeds(tool, ['-w', '-S', chain]);
      if (!present) await run(tool, ['-w', '-N', chain]);
      if (!(await succeeds(tool, ['-w', '-C', parent, '-j', chain])))
        await run(tool, ['-w', '-I', parent, '1', '-j', chain]);
    }
    for (const { chain, rule } of guardRules(bridge))
      if (!(await succeeds(tool, ['-w', '-C', chain, ...rule])))
        await run(tool, ['-w', '-A', chain, ...rule]);
  }
}

/** iptables -S and -C answer by exit status: failing is their "no". */
function succeeds(tool: string, args: string[]): Promise<boolean> {
  return run(tool, args).then(
    () => true,
    () => false,
  );
}
