// Keeps a suite's processes off the internet for the hosts it names: a command prefix that runs
// a process in its own mount namespace, where /etc/hosts sends those hosts to 127.0.0.1. A fetch
// from them fails at once (connection refused on loopback); no DNS query or packet leaves.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Offline {
  /** Prefix for a command line, e.g. LocalKova's agentPrefix. */
  prefix: string[];
  cleanup(): Promise<void>;
}

export async function offlineFor(hosts: string[]): Promise<Offline> {
  const dir = await mkdtemp(join(tmpdir(), 'kova-offline-'));
  const file = join(dir, 'hosts');
  await writeFile(file, `127.0.0.1 localhost\n127.0.0.1 ${hosts.join(' ')}\n`);
  return {
    prefix: [
      'unshare',
      '--mount',
      '--propagation',
      'private',
      '--',
      'sh',
      '-c',
      'mount --bind "$0" /etc/hosts && exec "$@"',
      file,
    ],
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}
