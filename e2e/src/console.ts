// The console as a user's tools see it: `kubectl kova console` and `console-log` (the plugin,
// run as a process), and the node's console endpoint spoken to directly, as anyone on the
// network could, to see what it lets in.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { join } from 'node:path';
import { connect, type TLSSocket } from 'node:tls';
import { until } from '@kova/hack';
import type { Actions } from './actions.js';
import { root, type Cluster } from './cluster.js';

export class ConsoleClient {
  constructor(
    private readonly c: Cluster,
    private readonly actions: Actions,
  ) {}

  /** `kubectl kova <args>` in the suite's namespace, stdin and stdout piped. */
  plugin(args: string[]): ChildProcessWithoutNullStreams {
    const main = join(root, 'kubectl-kova', 'dist', 'main.js');
    const argv = [main, ...args, '-n', this.c.namespace, '--kubeconfig', this.c.kubeconfigPath];
    return spawn(process.execPath, argv, { stdio: 'pipe' });
  }

  /** A Console (or ConsoleLog) action with a ticket of our own; resolves once it is Running. */
  async session(instance: string, action = 'Console') {
    const ticket = randomBytes(32).toString('hex');
    const ticketSHA256 = createHash('sha256').update(ticket).digest('hex');
    const name = await this.actions.request(instance, action, { ticketSHA256 });
    const running = await until(
      `${name} to be taken up by the node`,
      async () => {
        const a = await this.actions.get(name);
        if (a.status?.phase === 'Failed')
          throw new Error(`${a.status.reason}: ${a.status.message}`);
        return a.status?.console ? a : undefined;
      },
      30_000,
      100,
    );
    return {
      name,
      ticket,
      console: running.status?.console as { endpoint: string; certSHA256: string },
    };
  }

  /** Connects to an endpoint as the plugin does; resolves to the socket and the endpoint's answer. */
  async hello(
    endpoint: string,
    hello: object,
  ): Promise<{ socket: TLSSocket; answer: Record<string, unknown> }> {
    const at = endpoint.lastIndexOf(':');
    const socket = connect({
      host: endpoint.slice(0, at).replace(/^\[|\]$/g, ''),
      port: Number(endpoint.slice(at + 1)),
      rejectUnauthorized: false,
    });
    await once(socket, 'secureConnect');
    socket.write(`${JSON.stringify(hello)}\n`);
    let buf = '';
    while (!buf.includes('\n')) {
      const [chunk] = (await once(socket, 'data')) as [Buffer];
      buf += chunk.toString('utf8');
    }
    return {
      socket,
      answer: JSON.parse(buf.slice(0, buf.indexOf('\n'))) as Record<string, unknown>,
    };
  }
}

/** Collects a stream's output and waits for text in it. */
export class Output {
  text = '';
  bytes = 0;

  constructor(stream: NodeJS.ReadableStream) {
    stream.on('data', (b: Buffer) => {
      this.bytes += b.length;
      // Keep the tail only: a flood must not grow the test's memory without bound.
      this.text = (this.text + b.toString('latin1')).slice(-65_536);
    });
  }

  waitFor(needle: string, timeoutMs = 60_000): Promise<true> {
    return until(
      `console output to show ${JSON.stringify(needle)}`,
      async () => this.text.includes(needle) || undefined,
      timeoutMs,
      100,
    );
  }
}
