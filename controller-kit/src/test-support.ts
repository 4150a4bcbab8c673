// Helpers for the controller kit's own tests against the real API server of the jest run.
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

export async function createNamespace(kc: KubeConfig, prefix: string): Promise<string> {
  const name = `${prefix}-${Math.random().toString(36).slice(2, 7)}`;
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name } } });
  return name;
}

export async function deleteNamespace(kc: KubeConfig, name: string): Promise<void> {
  await kc.makeApiClient(CoreV1Api).deleteNamespace({ name });
}

/**
 * A TCP proxy on 127.0.0.1 in front of the API server that can be frozen: frozen, it keeps
 * every connection open and passes nothing, as a hung API server or a dropped route would.
 */
export class FreezableProxy {
  private readonly sockets = new Set<Socket>();
  private frozen = false;
  private constructor(private readonly server: Server) {}

  static async start(target: URL): Promise<FreezableProxy> {
    const server = createServer();
    const proxy = new FreezableProxy(server);
    server.on('connection', (client) => proxy.accept(client, target));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return proxy;
  }

  get url(): string {
    return `https://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  freeze(): void {
    this.frozen = true;
    for (const s of this.sockets) s.pause();
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }

  private accept(client: Socket, target: URL): void {
    this.sockets.add(client);
    client.on('close', () => this.sockets.delete(client));
    if (this.frozen) {
      client.pause();
      return;
    }
    const upstream = connect(Number(target.port), target.hostname);
    this.sockets.add(upstream);
    upstream.on('close', () => this.sockets.delete(upstream));
    client.pipe(upstream).pipe(client);
    const end = () => (client.destroy(), upstream.destroy());
    client.on('error', end);
    upstream.on('error', end);
  }
}

/** A copy of the kubeconfig that talks to `server` instead (same credentials, same CA). */
export function kubeConfigVia(kc: KubeConfig, server: string): KubeConfig {
  const copy = new KubeConfig();
  copy.loadFromOptions({
    clusters: kc.clusters.map((c) => ({ ...c, server })),
    users: kc.users,
    contexts: kc.contexts,
    currentContext: kc.currentContext,
  });
  return copy;
}
