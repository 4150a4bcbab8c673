// An HTTP image server the e2e suites control, to break downloads on purpose: hold a transfer
// after its first bytes until released, or cut the first transfer midway. Each image is a
// raw disk of random bytes (so each has its own checksum) booted with the test guest's kernel.
import { GROUP, VERSION, type IImage } from '@kova/crds';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Cluster } from './cluster.js';

export type Behaviour = 'serve' | 'hold' | 'cut-first';

const SIZE = 2 * 1024 * 1024;
const FIRST_BYTES = 64 * 1024;

export class ServedImage {
  readonly data = randomBytes(SIZE);
  readonly sha256 = createHash('sha256').update(this.data).digest('hex');
  requests = 0;
  private held: ServerResponse[] = [];
  private releasedAll = false;

  constructor(
    readonly name: string,
    private readonly behaviour: Behaviour,
  ) {}

  /** Lets held transfers finish, and later ones run at full speed. */
  release(): void {
    this.releasedAll = true;
    for (const res of this.held.splice(0)) res.end(this.data.subarray(FIRST_BYTES));
  }

  serve(res: ServerResponse): void {
    this.requests++;
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': SIZE });
    if (this.behaviour === 'hold' && !this.releasedAll) {
      res.write(this.data.subarray(0, FIRST_BYTES));
      this.held.push(res);
    } else if (this.behaviour === 'cut-first' && this.requests === 1) {
      res.write(this.data.subarray(0, SIZE / 2), () => res.destroy());
    } else {
      res.end(this.data);
    }
  }
}

export class ImageServer {
  private readonly images = new Map<string, ServedImage>();
  private readonly server: Server = createServer((req, res) => {
    const image = this.images.get((req.url ?? '').slice(1));
    if (image) return image.serve(res);
    res.writeHead(404).end();
  });

  /** `host`: an address of this machine the agents reach, e.g. the node lab's gateway. */
  constructor(
    private readonly cluster: Cluster,
    private readonly host = '127.0.0.1',
  ) {}

  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, this.host, r));
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }

  /** Serves a new image and creates its Image object (the test guest's kernel, this disk). */
  async add(
    name: string,
    behaviour: Behaviour,
    opts: { sha256?: string } = {},
  ): Promise<ServedImage> {
    const image = new ServedImage(name, behaviour);
    this.images.set(name, image);
    const guest = (await this.cluster.api.getClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: 'images',
      name: 'kova-guest',
    })) as IImage;
    const { port } = this.server.address() as AddressInfo;
    await this.cluster.api.createClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: 'images',
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'Image',
        metadata: { name },
        spec: {
          ...guest.spec,
          source: `http://${this.host}:${port}/${name}`,
          format: 'raw',
          sha256: opts.sha256 ?? image.sha256,
        },
      },
    });
    return image;
  }
}
