// console and console-log against the jest run's real API server, with a TLS server written here
// standing in for the node agent's console endpoint; the test writes each action's status as the
// operator and node agent would, publishing that endpoint and its certificate's fingerprint.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { InstanceActionObject } from '@kova/crds';
import { until } from '@kova/hack';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import { pluginFixture } from './test-support.js';

const instances = [
  'echo-1',
  'linger-1',
  'flood-1',
  'refused-1',
  'pinned-1',
  'log-1',
  'tty-1',
  'slow-1',
  'failed-1',
];
const { ns, user, start, run, actionsOf, createdFor, setStatus } = pluginFixture(
  'kubectl-kova-console',
  [...instances, 'denied-1'],
  instances,
);

interface Hello {
  namespace: string;
  action: string;
  ticket: string;
}

/** What the stand-in does once it has read the plugin's first line. */
type Handler = (socket: TLSSocket, hello: Hello) => void;

const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');

let key: Buffer;
let cert: Buffer;

/** The stand-in endpoint: reads the first line byte-exactly, then hands the socket over. */
class Endpoint {
  readonly hellos: Hello[] = [];
  /** TCP connections, and the bytes received on them after the TLS handshake. */
  connections = 0;
  closed = 0;
  bytesReceived = 0;
  private readonly server: Server;
  private readonly sockets = new Set<TLSSocket>();

  /** `allowHalfOpen`: the end of the plugin's input does not end the connection. */
  constructor(handler: Handler, allowHalfOpen = false) {
    this.server = createServer({ key, cert, allowHalfOpen }, (socket) => {
      this.sockets.add(socket);
      socket.on('error', () => undefined);
      let head = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        this.bytesReceived += chunk.length;
        head = Buffer.concat([head, chunk]);
        const newline = head.indexOf(0x0a);
        if (newline === -1) return;
        socket.off('data', onData);
        const hello = JSON.parse(head.subarray(0, newline).toString()) as Hello;
        this.hellos.push(hello);
        if (newline + 1 < head.length) socket.unshift(head.subarray(newline + 1));
        handler(socket, hello);
      };
      socket.on('data', onData);
    });
    this.server.on('connection', (tcp: Socket) => {
      this.connections++;
      tcp.on('close', () => this.closed++);
    });
    this.server.on('tlsClientError', () => undefined);
  }

  async listen(): Promise<string> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    return `127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    return new Promise((r) => this.server.close(() => r()));
  }
}

const endpoints: Endpoint[] = [];

/** Starts the plugin and, as the node agent would, publishes the endpoint once it sees the action. */
async function openWith(
  args: string[],
  handler: Handler,
  {
    certSHA256 = sha256(new X509Certificate(cert).raw),
    wrap = (argv: string[]) => argv,
    allowHalfOpen = false,
  } = {},
) {
  const endpoint = new Endpoint(handler, allowHalfOpen);
  endpoints.push(endpoint);
  const address = await endpoint.listen();
  const plugin = start(args, wrap);
  const action = await createdFor(args[1] as string);
  await setStatus(action.metadata.name, {
    phase: 'Running',
    startTime: now(),
    console: { endpoint: address, certSHA256 },
  });
  return { plugin, action, endpoint };
}

/** The plugin's first line names the action and carries the ticket whose hash the action holds. */
function expectHello(endpoint: Endpoint, action: InstanceActionObject): void {
  expect(endpoint.hellos).toEqual([
    {
      namespace: ns,
      action: action.metadata.name,
      ticket: expect.stringMatching(/^[0-9a-f]{64}$/),
    },
  ]);
  expect(sha256(endpoint.hellos[0]?.ticket as string)).toBe(action.spec.ticketSHA256);
}

const ok = '{"ok":true}\n';

beforeAll(() => {
  const dir = mkdtempSync(join(tmpdir(), 'kubectl-kova-console-'));
  try {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-subj',
        '/CN=kova-node-agent-console',
        '-days',
        '1',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    key = readFileSync(join(dir, 'key.pem'));
    cert = readFileSync(join(dir, 'cert.pem'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

afterAll(async () => {
  await Promise.all(endpoints.map((e) => e.close()));
});

describe('kubectl kova console and console-log', () => {
  it('relays stdin to the console and the console to stdout, and ends with stdin', async () => {
    const { plugin, action, endpoint } = await openWith(['console', 'echo-1'], (socket) => {
      // What follows the answer in the same write is already console output.
      socket.write(`${ok}login: `);
      socket.on('data', (d: Buffer) => socket.write(d.toString().toUpperCase()));
      socket.on('end', () => socket.end());
    });
    expect(action.spec).toEqual({
      instance: 'echo-1',
      action: 'Console',
      ticketSHA256: expect.stringMatching(/^[0-9a-f]{64}$/),
      requestedBy: user,
    });
    await until('the greeting on stderr', () => plugin.stderr().length > 0, 10_000);
    expect(plugin.stderr()).toBe('Connected to the serial console of echo-1 (escape: Ctrl-])\n');
    plugin.child.stdin.write('root\n');
    await until('the echo on stdout', () => plugin.stdout() === 'login: ROOT\n', 10_000);
    plugin.child.stdin.end('echo bye\n');

    expect(await plugin.exit).toBe(0);
    expect(plugin.stdout()).toBe('login: ROOT\nECHO BYE\n');
    expectHello(endpoint, action);
  });

  it('gives an endpoint that stays open after stdin ended 2 s to close', async () => {
    const { plugin } = await openWith(['console', 'linger-1'], (socket) => socket.write(ok), {
      allowHalfOpen: true,
    });
    await until('the greeting', () => plugin.stderr().length > 0, 10_000);
    const ended = Date.now();
    plugin.child.stdin.end();

    expect(await plugin.exit).toBe(0);
    expect(Date.now() - ended).toBeGreaterThanOrEqual(1900);
    expect(Date.now() - ended).toBeLessThan(10_000);
  });

  it('passes a 10 MB flood of console output on complete', async () => {
    const flood = randomBytes(10 * 1024 * 1024);
    const { plugin } = await openWith(['console', 'flood-1'], (socket) => {
      socket.write(ok);
      socket.end(flood);
    });

    expect(await plugin.exit).toBe(0);
    const received = plugin.stdoutBytes();
    expect(received.length).toBe(flood.length);
    expect(sha256(received)).toBe(sha256(flood));
  });

  it("exits 1 with the endpoint's reason when it refuses the ticket", async () => {
    const { plugin } = await openWith(['console', 'refused-1'], (socket) =>
      socket.end('{"ok":false,"reason":"TicketUsed","message":"the ticket was used already"}\n'),
    );

    expect(await plugin.exit).toBe(1);
    expect(plugin.stdout()).toBe('');
    expect(plugin.stderr()).toBe('error: TicketUsed: the ticket was used already\n');
  });

  it('refuses an endpoint whose certificate is not the one published, before sending anything', async () => {
    const { plugin, endpoint } = await openWith(['console', 'pinned-1'], () => undefined, {
      certSHA256: sha256(randomBytes(32)),
    });

    expect(await plugin.exit).toBe(1);
    expect(plugin.stderr()).toBe(
      "error: the console endpoint's certificate does not match the one the node agent published\n",
    );
    await until('the connection to close', () => endpoint.closed === endpoint.connections, 10_000);
    expect(endpoint.connections).toBe(1);
    expect(endpoint.bytesReceived).toBe(0);
  });

  it('console-log --tail asks for that many lines and prints what the endpoint sends', async () => {
    const log = 'line 4\r\nline 5\r\nline 6\r\nline 7\r\nline 8\r\n';
    const { plugin, action, endpoint } = await openWith(
      ['console-log', 'log-1', '--tail', '5'],
      (socket) => socket.end(ok + log),
    );

    expect(await plugin.exit).toBe(0);
    expect(plugin.stdout()).toBe(log);
    expect(plugin.stderr()).toBe('');
    expect(action.spec).toMatchObject({ action: 'ConsoleLog', tailLines: 5, requestedBy: user });
    expectHello(endpoint, action);
  });

  it("on a terminal, sends keys raw (Ctrl-C too), leaves at Ctrl-] and restores the terminal's mode", async () => {
    const received: string[] = [];
    // script(1) gives the plugin a pseudo-terminal; the same shell then prints the exit code and
    // the terminal's mode as the plugin left it.
    const onTerminal = (argv: string[]) => [
      'script',
      '-qec',
      `${argv.map((a) => `'${a}'`).join(' ')}; echo "exit=$?"; stty -a`,
      '/dev/null',
    ];
    const { plugin } = await openWith(
      ['console', 'tty-1'],
      (socket) => {
        socket.write(ok);
        socket.on('data', (d: Buffer) => {
          received.push(d.toString());
          socket.write(d.toString().toUpperCase());
        });
      },
      { wrap: onTerminal },
    );
    await until('the greeting', () => plugin.stdout().includes('(escape: Ctrl-])'), 10_000);
    plugin.child.stdin.write('a\x03b');
    await until('the echo', () => plugin.stdout().includes('A\x03B'), 10_000);
    plugin.child.stdin.write('\x1dnot sent');

    expect(await plugin.exit).toBe(0);
    expect(received.join('')).toBe('a\x03b');
    const after = plugin.stdout().slice(plugin.stdout().indexOf('exit='));
    expect(after).toMatch(/^exit=0\r?\n/);
    expect(after).toMatch(/(^|\s)icanon\s/);
    expect(after).toMatch(/(^|\s)echo\s/);
  });

  it('gives up after --timeout when the console is not published', async () => {
    const plugin = start(['console', 'slow-1', '--timeout=2s']);
    const { name } = (await createdFor('slow-1')).metadata;

    expect(await plugin.exit).toBe(1);
    expect(plugin.stderr()).toBe(
      `error: timed out after 2s waiting for instanceaction/${name} to open the console (phase: none yet)\n`,
    );
  });

  it('is refused by the API server without the right to the console, before anything is created', async () => {
    for (const verb of ['console', 'console-log']) {
      const refused = await run([verb, 'denied-1']);
      expect(refused.code).toBe(1);
      expect(refused.stdout).toBe('');
      expect(refused.stderr).toMatch(
        new RegExp(
          `^Error from server \\(Forbidden\\): .*${user} may not .* of Instance denied-1 `,
        ),
      );
    }
    expect(await actionsOf('denied-1')).toEqual([]);
  });

  it('exits 1 with the reason and message when the action Failed', async () => {
    const plugin = start(['console', 'failed-1']);
    const { name } = (await createdFor('failed-1')).metadata;
    const message =
      'Instance failed-1 is in phase Scheduling; Console needs an Active or Stopped Instance';
    await setStatus(name, { phase: 'Failed', reason: 'InvalidState', message });

    expect(await plugin.exit).toBe(1);
    expect(plugin.stderr()).toBe(`error: InvalidState: ${message}\n`);
  });
});

const now = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');
