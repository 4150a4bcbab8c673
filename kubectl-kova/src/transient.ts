// Which failures of a request are worth asking again, and how long to wait before doing so.
import { apiMessage, apiStatus } from '@kova/controller-kit';

/** Network failures that say nothing about the request: the server or the way there was down. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

/**
 * A failure that may go away: the network's (no answer at all), a timed-out request
 * (--request-timeout), the server's 5xx or 429. Any other answer (404, 403, 401…) is definite.
 */
export function isTransient(err: unknown): boolean {
  const status = apiStatus(err);
  if (status !== undefined) return status === 429 || status >= 500;
  if (!(err instanceof Error)) return false;
  if (err.name === 'AbortError' || err.name === 'TimeoutError') return true;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && NETWORK_CODES.has(code);
}

/** Before the nth retry in a row (n from 1): 0.5 s, doubling up to 8 s. */
export const backoffMs = (n: number) => Math.min(500 * 2 ** (n - 1), 8000);

/**
 * The failure in words; a request that --request-timeout cut short says so (node-fetch's own
 * words would be "The user aborted a request.").
 */
export function describeFailure(err: unknown): string {
  if (err instanceof Error && err.name === 'AbortError')
    return 'the API server did not answer within --request-timeout';
  return apiMessage(err);
}
