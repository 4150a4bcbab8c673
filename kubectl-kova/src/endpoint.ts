// The node agent's console endpoint: TLS to the host:port the agent published in the action's
// status, trusted because its certificate is the one published beside it (the status comes from
// the API server, which the kubeconfig trusts), not because of a CA.
import { createHash } from 'node:crypto';
import { connect, type TLSSocket } from 'node:tls';

export interface ConsoleEndpoint {
  endpoint: string;
  certSHA256: string;
}

/** The certificate check failed: printed as is, not as a connection error. */
export class CertificateMismatch extends Error {
  constructor() {
    super("the console endpoint's certificate does not match the one the node agent published");
  }
}

/**
 * Connects and, once the certificate is checked, sends `hello`, which carries the ticket: a
 * stranger's endpoint never sees it. A mismatch destroys the socket with CertificateMismatch.
 */
export function dial(target: ConsoleEndpoint, hello: string): TLSSocket {
  const { host, port } = hostPort(target.endpoint);
  const socket = connect({ host, port, rejectUnauthorized: false });
  // A console may sit idle for hours: keepalive notices a vanished node (and keeps NAT and
  // firewall state alive) without an idle timeout that would close a quiet session.
  socket.setKeepAlive(true, 30_000);
  socket.once('secureConnect', () => {
    const der = socket.getPeerX509Certificate()?.raw;
    const fingerprint = der && createHash('sha256').update(der).digest('hex');
    if (fingerprint !== target.certSHA256.toLowerCase()) socket.destroy(new CertificateMismatch());
    else socket.write(hello);
  });
  return socket;
}

/** `host:port` or `[v6 address]:port`. */
function hostPort(endpoint: string): { host: string; port: number } {
  const colon = endpoint.lastIndexOf(':');
  const host = endpoint.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  const port = Number(endpoint.slice(colon + 1));
  if (colon <= 0 || !host || !Number.isInteger(port) || port < 1 || port > 65535)
    throw new Error(
      `the node agent published a console endpoint that is not host:port: ${endpoint}`,
    );
  return { host, port };
}
