// The console endpoint answers the ticket with one line of JSON, {"ok":true} or
// {"ok":false,"reason":…,"message":…}; every byte after that line is the console's.
import { Transform, type TransformCallback } from 'node:stream';

/** More than any answer needs: an endpoint that sends this much without a newline is no agent. */
const MAX_ANSWER = 64 * 1024;

/**
 * Reads the answer byte-exactly and passes on only what follows it, emitting 'ok' before the
 * first console byte; fails with `reason: message` when the endpoint refused the ticket.
 */
export class AnswerReader extends Transform {
  private head: Buffer[] = [];
  private headLength = 0;
  private answered = false;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    if (this.answered) return done(null, chunk);
    const newline = chunk.indexOf(0x0a);
    if (newline === -1) {
      this.head.push(chunk);
      this.headLength += chunk.length;
      return done(this.headLength > MAX_ANSWER ? notProtocol('no answer line') : null);
    }
    this.head.push(chunk.subarray(0, newline));
    const refused = refusal(Buffer.concat(this.head).toString('utf8'));
    if (refused) return done(refused);
    this.answered = true;
    this.emit('ok');
    done(null, chunk.subarray(newline + 1));
  }

  override _flush(done: TransformCallback): void {
    done(
      this.answered
        ? null
        : new Error('the console endpoint closed the connection without answering'),
    );
  }
}

function refusal(line: string): Error | undefined {
  let answer: { ok?: unknown; reason?: unknown; message?: unknown } | undefined;
  try {
    answer = JSON.parse(line) as typeof answer;
  } catch {
    answer = undefined;
  }
  if (answer?.ok === true) return undefined;
  if (answer?.ok === false) return new Error(`${String(answer.reason)}: ${String(answer.message)}`);
  return notProtocol(JSON.stringify(line.slice(0, 200)));
}

const notProtocol = (what: string) =>
  new Error(`the console endpoint does not speak kova's console protocol: ${what}`);
