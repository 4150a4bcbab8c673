// The HTTP endpoints every kova process serves: /metrics for Prometheus, /healthz (the process
// works; a failing check means restart it) and /readyz (it can do its job right now).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { register as defaultRegistry, type Registry } from 'prom-client';
import type { Logger } from './log.js';

export type Check = () => boolean | string | Promise<boolean | string>;

export interface HealthServerOptions {
  port: number;
  host?: string;
  registry?: Registry;
  logger?: Logger;
}

export class HealthServer {
  private readonly live = new Map<string, Check>();
  private readonly ready = new Map<string, Check>();
  private server: Server | undefined;

  constructor(private readonly opts: HealthServerOptions) {}

  addLivenessCheck(name: string, check: Check): void {
    this.live.set(name, check);
  }

  addReadinessCheck(name: string, check: Check): void {
    this.ready.set(name, check);
  }

  /** Starts listening; resolves with the bound port (useful with port 0). */
  async start(): Promise<number> {
    const registry = this.opts.registry ?? defaultRegistry;
    this.server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      const respond = (status: number, body: string, type = 'text/plain; charset=utf-8') => {
        res.writeHead(status, { 'Content-Type': type });
        res.end(body);
      };
      const run = async () => {
        if (path === '/metrics')
          return respond(200, await registry.metrics(), registry.contentType);
        if (path === '/healthz') return respond(...(await report(this.live)));
        if (path === '/readyz') return respond(...(await report(this.ready)));
        return respond(404, 'not found\n');
      };
      run().catch((err: Error) => {
        this.opts.logger?.error('health endpoint failed', { path, error: err });
        respond(500, `${err.message}\n`);
      });
    });
    await new Promise<void>((r, reject) => {
      this.server?.once('error', reject);
      this.server?.listen(this.opts.port, this.opts.host ?? '0.0.0.0', () => r());
    });
    return (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
}

/** Runs every check; 200 when all pass, else 503 naming each failure and why. */
async function report(checks: Map<string, Check>): Promise<[number, string]> {
  const lines: string[] = [];
  let ok = true;
  for (const [name, check] of checks) {
    const result = await Promise.resolve()
      .then(check)
      .catch((err: Error) => err.message);
    const passed = result === true;
    ok &&= passed;
    lines.push(
      passed
        ? `[+] ${name} ok`
        : `[-] ${name} failed: ${result === false ? 'check failed' : result}`,
    );
  }
  lines.push(ok ? 'ok' : 'not ok');
  return [ok ? 200 : 503, `${lines.join('\n')}\n`];
}
