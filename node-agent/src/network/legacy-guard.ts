// Agents before the nftables ruleset guarded each bridge with iptables rules in the chains
// KOVA-INPUT and KOVA-FORWARD. Left in place, their DROP of everything routed out of a bridge
// would silently block a Network's egress: an agent removes them once, at start. A node without
// iptables (the agent image ships only nft) has none.
import type { Logger } from '@kova/controller-kit';
import { run } from '../host/exec.js';

const CHAINS = [
  ['INPUT', 'KOVA-INPUT'],
  ['FORWARD', 'KOVA-FORWARD'],
] as const;

/** iptables answers by exit status; a missing binary is a "no" too. */
const succeeds = (tool: string, args: string[]) =>
  run(tool, ['-w', ...args]).then(
    () => true,
    () => false,
  );

export async function removeLegacyGuard(logger: Logger): Promise<void> {
  for (const tool of ['iptables', 'ip6tables'])
    for (const [parent, chain] of CHAINS) {
      if (!(await succeeds(tool, ['-S', chain]))) continue;
      while (await succeeds(tool, ['-D', parent, '-j', chain]));
      await run(tool, ['-w', '-F', chain]);
      await run(tool, ['-w', '-X', chain]);
      logger.info('removed the iptables guard of an older kova agent', { tool, chain });
    }
}
