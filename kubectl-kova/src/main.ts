// kubectl kova: the plugin's entry point. Exit codes as kubectl's: 0 done, 1 for a usage error,
// an API error, a failed or timed-out action, or a console that could not be reached.
import { apiMessage, apiReason, apiStatus } from '@kova/controller-kit';
import { runAction } from './act.js';
import { parseArgs, UsageError, type Command } from './args.js';
import { ConfigurationError, connect } from './client.js';
import { showActions } from './history.js';
import { describeFailure } from './transient.js';
import { runSession } from './session.js';
import { usage } from './usage.js';

async function main(argv: readonly string[]): Promise<number> {
  let cmd: Command;
  try {
    cmd = parseArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`error: ${err.message}\n\n${usage(err.verb)}`);
    return 1;
  }
  if (cmd.verb === 'help') {
    process.stdout.write(usage(cmd.topic));
    return 0;
  }
  try {
    const cluster = connect(cmd.target);
    switch (cmd.verb) {
      case 'actions':
        return await showActions(cluster, cmd);
      case 'console':
      case 'console-log':
        return await runSession(cluster, cmd);
      default:
        return await runAction(cluster, cmd);
    }
  } catch (err) {
    process.stderr.write(`${describeError(err)}\n`);
    return 1;
  }
}

/**
 * As kubectl words it: `Error from server (NotFound): …` for a Status, `Error in configuration: …`
 * for a kubeconfig problem, else `error: …`.
 */
function describeError(err: unknown): string {
  if (err instanceof ConfigurationError) return `Error in configuration: ${err.message}`;
  const reason = apiStatus(err) === undefined ? undefined : apiReason(err);
  return reason
    ? `Error from server (${reason}): ${apiMessage(err)}`
    : `error: ${describeFailure(err)}`;
}

process.exitCode = await main(process.argv.slice(2));
