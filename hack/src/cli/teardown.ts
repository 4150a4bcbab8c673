// How `npm start` ends, on any signal or failure: every Instance in the local cluster is deleted
// through the API and its agent removes the domain, disks and tap (the operator and agents are
// started again first if they are down); then every process stops. What the agent could not
// remove (the API or agent broken for good) is removed directly, and the result is checked.
import { CustomObjectsApi } from '@kubernetes/client-node';
import { apiStatus, loadKubeConfig, type Logger } from '@kova/controller-kit';
import { GROUP, VERSION, type IInstance, type INetwork } from '@kova/crds';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { LocalKova } from '../local-kova.js';
import { until } from '../until.js';
import {
  bridgesNow,
  findLeftovers,
  removeLeftovers,
  restoreIpForward,
  tablesNow,
  type HostBefore,
  type Leftover,
  type RunFootprint,
} from './footprint.js';

/** Long enough for the agent to shut down a few dozen guests, 4 at a time, 5 s each at most. */
const DELETE_TIMEOUT_MS = 120_000;

export interface TeardownOptions {
  log: Logger;
  /** A line for the user. */
  say: (line: string) => void;
  /** What the host had before the run: not this run's to remove. */
  before: HostBefore;
}

/** Tears the run down and returns what is still left of it (nothing, unless removal failed). */
export async function teardown(kova: LocalKova, opts: TeardownOptions): Promise<Leftover[]> {
  const restarted = kova.restartCrashedNow();
  if (restarted.length) opts.say(`Restarted ${restarted.join(', ')} to delete the Instances.`);
  const api = loadKubeConfig(kova.kubeconfigPath).makeApiClient(CustomObjectsApi);
  const fp = await footprint(kova, api, opts);
  await within(DELETE_TIMEOUT_MS + 15_000, deleteAllInstances(api, opts.say, fp.uids)).catch(
    (err: Error) => {
      opts.log.error('could not delete every Instance through the API', { error: err });
      opts.say(`Could not delete them through the API (${err.message}); removing them directly.`);
    },
  );
  await kova.stop();
  const left = await findLeftovers(fp);
  // Domains and taps are the agent's to remove; finding any here means it could not.
  const agents = left.filter((l) => l.kind === 'domain' || l.kind === 'tap');
  if (agents.length) {
    opts.log.warn('removing directly what the agent left', { leftovers: agents });
    opts.say(`Removing directly: ${agents.map((l) => `${l.kind} ${l.name}`).join(', ')}`);
  }
  // No agent removes a bridge or its guard (another Instance may come): the run that made it does.
  await removeLeftovers(left.filter((l) => l.kind !== 'directory' && l.kind !== 'process'));
  await restoreIpForward(opts.before);
  return findLeftovers(fp);
}

async function footprint(
  kova: LocalKova,
  api: CustomObjectsApi,
  opts: TeardownOptions,
): Promise<RunFootprint> {
  const stateDirs = kova.nodes.map((n) => kova.stateDirOf(n));
  const uids = new Set<string>();
  for (const dir of stateDirs)
    for (const uid of await readdir(join(dir, 'instances')).catch(() => [] as string[]))
      uids.add(uid);
  return {
    nodes: kova.nodes,
    stateDirs,
    tempDirs: [...stateDirs, kova.cp.endpoints.dir],
    uids,
    bridges: await runBridges(api, opts),
    tables: (await tablesNow()).filter((t) => !opts.before.tables.has(t)),
  };
}

/**
 * The bridges of the cluster's Networks that appeared during the run. Without the API, every
 * bridge that appeared meanwhile: only one without ports is ever removed.
 */
async function runBridges(api: CustomObjectsApi, opts: TeardownOptions): Promise<string[]> {
  const named = await within(
    10_000,
    api.listClusterCustomObject({ group: GROUP, version: VERSION, plural: 'networks' }),
  ).then(
    (list) => (list as { items: INetwork[] }).items.map((n) => n.spec.bridge),
    (err: Error) => {
      opts.log.warn('could not list Networks; judging bridges by when they appeared', {
        error: err,
      });
      return undefined;
    },
  );
  return [...(named ?? (await bridgesNow()))].filter((b) => !opts.before.bridges.has(b));
}

async function deleteAllInstances(
  api: CustomObjectsApi,
  say: (line: string) => void,
  uids: Set<string>,
): Promise<void> {
  const list = async () =>
    (
      (await api.listClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: 'instances',
      })) as {
        items: IInstance[];
      }
    ).items;
  const all = await list();
  for (const i of all) uids.add(i.metadata?.uid as string);
  if (all.length)
    say(`Deleting ${all.length} Instance(s): ${all.map((i) => i.metadata?.name).join(', ')}`);
  for (const i of all) {
    const ref = { group: GROUP, version: VERSION, plural: 'instances' };
    await api
      .deleteNamespacedCustomObject({
        ...ref,
        namespace: i.metadata?.namespace as string,
        name: i.metadata?.name as string,
      })
      .catch((err) => {
        if (apiStatus(err) !== 404) throw err;
      });
  }
  await until(
    'every Instance to be gone',
    async () => (await list()).length === 0,
    DELETE_TIMEOUT_MS,
    250,
  );
}

/** A hung API server must not hold the teardown: give up on `work` after `ms`. */
function within<T>(ms: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms / 1000} s`)), ms);
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}
