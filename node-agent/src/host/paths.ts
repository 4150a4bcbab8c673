// Every path the agent writes is built here, under its state dir, from Instance UIDs and image
// checksums only — never from names a user chose — and checked to stay inside the state dir.
import { join, resolve, sep } from 'node:path';
import { BuildFault } from '../errors.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const SHA256 = /^[0-9a-f]{64}$/;

export class StatePaths {
  readonly root: string;

  constructor(stateDir: string) {
    this.root = resolve(stateDir);
  }

  get images(): string {
    return join(this.root, 'images');
  }

  get instances(): string {
    return join(this.root, 'instances');
  }

  image(sha256: string): string {
    if (!SHA256.test(sha256))
      throw new BuildFault(
        'InvalidImage',
        `image checksum ${JSON.stringify(sha256)} is not 64 lowercase hex digits`,
        false,
      );
    return this.inside(join(this.images, `${sha256}.img`));
  }

  instanceDir(uid: string): string {
    if (!UUID.test(uid))
      throw new Error(`refusing a path for ${JSON.stringify(uid)}: not an Instance UID`);
    return this.inside(join(this.instances, uid));
  }

  instanceFile(
    uid: string,
    file:
      | 'root.qcow2'
      | 'root.replaced.qcow2'
      | 'ephemeral.qcow2'
      | 'swap.qcow2'
      | 'cidata.iso'
      | 'console.log'
      | 'console.sock',
  ): string {
    return this.inside(join(this.instanceDir(uid), file));
  }

  private inside(path: string): string {
    const p = resolve(path);
    if (!p.startsWith(this.root + sep))
      throw new Error(`path ${p} would leave the state dir ${this.root}`);
    return p;
  }
}
