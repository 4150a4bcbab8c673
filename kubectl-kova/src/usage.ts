// Help text, overall and per verb, in kubectl's layout.
import { DEFAULT_TIMEOUT, SESSION_TIMEOUT, type Verb } from './args.js';
import {
  ACTION_VERBS,
  isActionVerb,
  isSessionVerb,
  SESSION_VERBS,
  type SessionVerbName,
} from './verbs.js';

const GLOBAL_OPTIONS = `Global options:
    -n, --namespace='': The namespace of the Instance (default: the context's, else default)
    --context='': The kubeconfig context to use
    --kubeconfig='': Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)
    --cluster='': The kubeconfig cluster to use instead of the context's
    --user='': The kubeconfig user to use instead of the context's
    -s, --server='': The address and port of the Kubernetes API server
    --token='': Bearer token for authentication to the API server
    --certificate-authority='': Path to a cert file for the certificate authority
    --insecure-skip-tls-verify=false: Do not check the server's certificate (insecure)
    --as='': Username to impersonate for the operation (the action's requestedBy)
    --as-group=[]: Group to impersonate for the operation, repeatable
    --request-timeout='0': How long to wait for a single server request (e.g. 10s); 0 for no limit
    -h, --help: Show this help`;

export function usage(verb?: Verb): string {
  if (verb === 'actions') return actionsUsage();
  if (verb && isActionVerb(verb)) return actionUsage(verb);
  if (verb && isSessionVerb(verb)) return sessionUsage(verb);
  const verbs = Object.entries({ ...ACTION_VERBS, ...SESSION_VERBS }).map(
    ([name, v]) => `  ${name.padEnd(13)}${v.summary}`,
  );
  return `kubectl kova runs day-2 actions on kova Instances, opens their serial consoles and shows
their history.

Commands:
${verbs.join('\n')}
  ${'actions'.padEnd(13)}List an Instance's actions, oldest first

Usage:
  kubectl kova COMMAND NAME [options]

Use "kubectl kova COMMAND --help" for more about a command.

${GLOBAL_OPTIONS}
`;
}

function actionUsage(verb: keyof typeof ACTION_VERBS): string {
  const { action, summary } = ACTION_VERBS[verb];
  const hard =
    verb === 'restart'
      ? '\n    --hard=false: Reset the guest at once instead of shutting it down'
      : '';
  return `${summary}.

Creates an InstanceAction (${action}) for the Instance NAME and waits for its result.

Usage:
  kubectl kova ${verb} NAME${verb === 'restart' ? ' [--hard]' : ''} [--no-wait] [--timeout=${DEFAULT_TIMEOUT}] [-o json|yaml] [options]

Options:${hard}
    --no-wait=false: Print the created action's name and return without waiting for its result
    --timeout='${DEFAULT_TIMEOUT}': How long to wait for the result (e.g. 30s, 2m); 0 checks once, negative waits a week; the action goes on after it
    -o, --output='': Print the InstanceAction as json or yaml instead of a line

${GLOBAL_OPTIONS}
`;
}

function sessionUsage(verb: SessionVerbName): string {
  const { action, summary } = SESSION_VERBS[verb];
  const attach = verb === 'console';
  const what = attach
    ? `relays the console: its output to stdout, stdin to the guest. On a terminal, keys go to the
guest as typed (Ctrl-C included) and Ctrl-] ends the session; from a pipe, stdin goes as is and
its end ends the session.`
    : 'prints what the guest wrote to its serial console, then exits.';
  return `${summary}.

Creates an InstanceAction (${action}) for the Instance NAME carrying the hash of a one-time
ticket, waits until the node agent runs it, connects to the node's console endpoint (TLS, its
certificate checked against the one published in the action), presents the ticket and
${what}

Usage:
  kubectl kova ${verb} NAME${attach ? '' : ' [--tail=N]'} [--timeout=${SESSION_TIMEOUT}] [options]

Options:${attach ? '' : "\n    --tail='': Print only the last N lines (default: all)"}
    --timeout='${SESSION_TIMEOUT}': How long to wait for the console to be reachable (e.g. 30s, 2m); 0 checks once, negative waits a week

${GLOBAL_OPTIONS}
`;
}

function actionsUsage(): string {
  return `List the Instance's InstanceActions, oldest first: who asked for what, when, and how it ended.

Usage:
  kubectl kova actions NAME [-o json|yaml] [options]

Options:
    -o, --output='': Print the actions as a List in json or yaml instead of a table

${GLOBAL_OPTIONS}
`;
}
