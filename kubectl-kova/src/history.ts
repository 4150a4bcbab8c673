// `actions NAME`: an Instance's InstanceActions, oldest first.
import type { Command } from './args.js';
import type { Cluster } from './client.js';
import { formatList } from './output.js';
import { actionsTable, sortOldestFirst } from './table.js';

type ActionsCommand = Extract<Command, { verb: 'actions' }>;

export async function showActions(cluster: Cluster, cmd: ActionsCommand): Promise<number> {
  const actions = sortOldestFirst(await cluster.listActions(cmd.instance));
  if (cmd.output) process.stdout.write(formatList(actions, cmd.output));
  // kubectl's words for an empty get, on stderr so that stdout stays empty.
  else if (actions.length === 0)
    process.stderr.write(`No resources found in ${cluster.namespace} namespace.\n`);
  else process.stdout.write(actionsTable(actions, new Date()));
  return 0;
}
