// In raw mode every key goes to the guest, Ctrl-C included; Ctrl-] (telnet's and virsh console's
// escape) is the one kept back, to leave the console.
import { Transform, type TransformCallback } from 'node:stream';

export const ESCAPE = 0x1d;

/** Passes keystrokes on up to the escape byte, then emits 'escape' and drops the rest. */
export class EscapeFilter extends Transform {
  private escaped = false;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    if (this.escaped) return done();
    const at = chunk.indexOf(ESCAPE);
    if (at === -1) return done(null, chunk);
    this.escaped = true;
    if (at > 0) this.push(chunk.subarray(0, at));
    this.emit('escape');
    done();
  }
}
