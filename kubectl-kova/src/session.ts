// console and console-log: a Console or ConsoleLog InstanceAction carrying a one-time ticket's
// hash, and, once the node agent runs it and has published its endpoint, a TLS connection there
// that presents the ticket.
import { isFinished, type InstanceActionObject } from '@kova/crds';
import type { Command } from './args.js';
import type { Cluster } from './client.js';
import { dial } from './endpoint.js';
import { relay } from './relay.js';
import { requestAction } from './request.js';
import { newTicket } from './ticket.js';
import { SESSION_VERBS, type SessionVerbName } from './verbs.js';
import { actionRef, timedOut, waitUntil } from './wait.js';

type SessionCommand = Extract<Command, { verb: SessionVerbName }>;

/** Returns the exit code: 0 when the endpoint closed or the user left, else 1. */
export async function runSession(cluster: Cluster, cmd: SessionCommand): Promise<number> {
  const deadline = Date.now() + cmd.timeoutMs;
  const { ticket, sha256 } = newTicket();
  const created = await requestAction(cluster, cmd.verb, {
    instance: cmd.instance,
    action: SESSION_VERBS[cmd.verb].action,
    ticketSHA256: sha256,
    ...(cmd.tailLines !== undefined && { tailLines: cmd.tailLines }),
  });
  const seen = await waitUntil(
    cluster,
    created,
    deadline - Date.now(),
    (a) => isFinished(a.status?.phase) || endpointOf(a) !== undefined,
  );
  if (!seen.reached) throw timedOut(seen, cmd.timeoutMs, 'open the console');
  const { status } = seen.action;
  if (status?.phase === 'Failed') {
    process.stderr.write(`error: ${status.reason}: ${status.message}\n`);
    return 1;
  }
  const endpoint = endpointOf(seen.action);
  if (!endpoint)
    throw new Error(`${actionRef(seen.action)} ended (${status?.phase}) without a console`);
  const hello = { namespace: cluster.namespace, action: created.metadata.name, ticket };
  const socket = dial(endpoint, `${JSON.stringify(hello)}\n`);
  return relay(socket, {
    answerWithinMs: Math.max(deadline - Date.now(), 0),
    attachTo: cmd.verb === 'console' ? cmd.instance : undefined,
  });
}

/** The endpoint counts once the action runs: the node agent publishes it as it takes it up. */
const endpointOf = (a: InstanceActionObject) =>
  a.status?.phase === 'Running' ? a.status.console : undefined;
