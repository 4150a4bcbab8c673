// The action verbs: ask for an InstanceAction on an Instance and, unless told not to, wait for
// its result.
import type { Command } from './args.js';
import type { Cluster } from './client.js';
import { formatObject } from './output.js';
import { requestAction } from './request.js';
import { ACTION_VERBS, type ActionVerbName } from './verbs.js';
import { waitForResult } from './wait.js';

type ActionCommand = Extract<Command, { verb: ActionVerbName }>;

/** Returns the exit code: 0 when the action was created (--no-wait) or Succeeded, else 1. */
export async function runAction(cluster: Cluster, cmd: ActionCommand): Promise<number> {
  const verb = ACTION_VERBS[cmd.verb];
  const created = await requestAction(cluster, cmd.verb, {
    instance: cmd.instance,
    action: verb.action,
    // The CRD allows hard on Reboot only; restart is the one verb whose flags let it through.
    ...(cmd.hard && { hard: true }),
  });
  if (!cmd.wait) {
    process.stdout.write(
      cmd.output
        ? formatObject(created, cmd.output)
        : `instanceaction.compute.kova.dev/${created.metadata.name} created\n`,
    );
    return 0;
  }
  const result = await waitForResult(cluster, created, cmd.timeoutMs, (line) =>
    process.stderr.write(`${line}\n`),
  );
  const failed = result.status?.phase === 'Failed';
  if (cmd.output) process.stdout.write(formatObject(result, cmd.output));
  else if (!failed) process.stdout.write(`instance/${cmd.instance} ${verb.done}\n`);
  if (failed) process.stderr.write(`error: ${result.status?.reason}: ${result.status?.message}\n`);
  return failed ? 1 : 0;
}
