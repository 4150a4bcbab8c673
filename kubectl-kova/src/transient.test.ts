import { describe, expect, it } from '@jest/globals';
import { ApiException } from '@kubernetes/client-node';
import { backoffMs, isTransient } from './transient.js';

const network = (code: string) => Object.assign(new Error(`connect ${code}`), { code });
const answer = (code: number) => new ApiException(code, 'HTTP-Code', undefined, {});

describe('isTransient', () => {
  it('retries the network failing, a request timing out, 5xx and 429', () => {
    for (const err of [
      network('ECONNREFUSED'),
      network('ECONNRESET'),
      network('ERR_STREAM_PREMATURE_CLOSE'),
      Object.assign(new Error('aborted'), { name: 'AbortError' }),
      answer(500),
      answer(503),
      answer(429),
      Object.assign(new Error('Service Unavailable'), { statusCode: 503 }),
    ])
      expect([err.message, isTransient(err)]).toEqual([err.message, true]);
  });

  it('gives up on a definite answer or an error that is no failure of the network', () => {
    for (const err of [
      answer(404),
      answer(403),
      answer(401),
      network('DEPTH_ZERO_SELF_SIGNED_CERT'),
      new TypeError('x is undefined'),
    ])
      expect([err.message, isTransient(err)]).toEqual([err.message, false]);
  });
});

describe('backoffMs', () => {
  it('doubles from half a second up to 8 s', () => {
    expect([1, 2, 3, 4, 5, 6, 10].map(backoffMs)).toEqual([
      500, 1000, 2000, 4000, 8000, 8000, 8000,
    ]);
  });
});
