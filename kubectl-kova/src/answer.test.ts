import { describe, expect, it } from '@jest/globals';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { AnswerReader } from './answer.js';

/** What the reader passes on when the endpoint sends `chunks`, and whether it said ok first. */
async function read(chunks: string[]): Promise<{ ok: boolean; passed: string }> {
  const reader = new AnswerReader();
  let ok = false;
  reader.once('ok', () => (ok = true));
  const passed = await text(Readable.from(chunks.map((c) => Buffer.from(c))).pipe(reader));
  return { ok, passed };
}

describe('AnswerReader', () => {
  it('reads the answer line however it is split, and passes on every byte after it', async () => {
    expect(await read(['{"ok":', 'true}', '\nlogin:', ' '])).toEqual({
      ok: true,
      passed: 'login: ',
    });
    expect(await read(['{"ok":true}\n'])).toEqual({ ok: true, passed: '' });
  });

  it('fails with the reason and message of a refusal, and on anything else', async () => {
    await expect(read(['{"ok":false,"reason":"TicketUsed","message":"used"}\nx'])).rejects.toThrow(
      /^TicketUsed: used$/,
    );
    await expect(read(['HTTP/1.1 400 Bad Request\r\n'])).rejects.toThrow(
      "the console endpoint does not speak kova's console protocol",
    );
    await expect(read(['{"ok":tr'])).rejects.toThrow(
      'the console endpoint closed the connection without answering',
    );
  });
});
