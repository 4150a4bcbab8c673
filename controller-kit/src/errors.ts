// Errors that carry a machine-readable reason code and a message a user can act on.
export class KovaError extends Error {
  constructor(
    readonly reason: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'KovaError';
  }
}

/** HTTP status of a failed Kubernetes API call, or undefined when it did not reach the server. */
export function apiStatus(err: unknown): number | undefined {
  const code =
    (err as { code?: unknown; statusCode?: unknown } | null)?.code ??
    (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof code === 'number' ? code : undefined;
}

/**
 * The Status message the API server returned, without client-node's header dump. client-node
 * drops the body of a 401 (its message would read "HTTP-Code: 401"), so that one is said here.
 */
export function apiMessage(err: unknown): string {
  const message = (statusBody(err) as { message?: unknown } | undefined)?.message;
  if (typeof message === 'string') return message;
  if (apiStatus(err) === 401) return 'Unauthorized: the API server refused the credentials (401)';
  return err instanceof Error ? (err.message.split('\n')[0] ?? err.message) : String(err);
}

/** The Status reason the API server returned (NotFound, Forbidden, Invalid…), if it sent one. */
export function apiReason(err: unknown): string | undefined {
  const reason = (statusBody(err) as { reason?: unknown } | undefined)?.reason;
  return typeof reason === 'string' && reason ? reason : undefined;
}

function statusBody(err: unknown): unknown {
  const body = (err as { body?: unknown } | null)?.body;
  return typeof body === 'string' ? safeJson(body) : body;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

export const isNotFound = (err: unknown) => apiStatus(err) === 404;
export const isConflict = (err: unknown) => apiStatus(err) === 409;
export const isAlreadyExists = isConflict;
