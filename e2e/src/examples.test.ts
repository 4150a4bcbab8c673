// What a user gets from `kubectl apply -f examples/` on the local stack with `npm start`'s
// settings: every object is accepted and the Instance gets as far as this machine allows. The
// machine has no internet, so the Ubuntu download must fail and say so, naming the URL. The
// agent resolves the image's host to 127.0.0.1 (offline.ts): nothing is sent outside.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { kubectlPath, LOCAL_RUN } from '@kova/hack';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { root, startLocalCluster, type LocalCluster } from './cluster.js';
import { Instances } from './instances.js';
import { offlineFor, type Offline } from './offline.js';

const examples = join(root, 'examples');
const texts = readdirSync(examples)
  .filter((f) => f.endsWith('.yaml'))
  .map((f) => readFileSync(join(examples, f), 'utf8'));
/** Every http(s) source in the examples: what an agent would download. */
const urls = texts.flatMap((t) =>
  [...t.matchAll(/^\s*source:\s*["']?(https?:\/\/[^\s"']+)/gm)].map((m) => m[1] as string),
);

let offline: Offline;
let cluster: LocalCluster;
let vms: Instances;

beforeAll(async () => {
  offline = await offlineFor([...new Set(urls.map((u) => new URL(u).hostname))]);
  cluster = await startLocalCluster({
    suite: 'examples',
    agentEnv: LOCAL_RUN.agentEnv,
    operatorEnv: LOCAL_RUN.operatorEnv,
    agentPrefix: offline.prefix,
  });
  vms = new Instances(cluster);
}, 300_000);

afterAll(async () => {
  await cluster?.stop();
  await offline?.cleanup();
});

const kubectl = async (args: string[]) =>
  (
    await promisify(execFile)(kubectlPath(), [...args, '-n', cluster.namespace], {
      env: { ...process.env, KUBECONFIG: cluster.kubeconfigPath },
    })
  ).stdout;

describe('the shipped examples, applied together', () => {
  it('kubectl apply -f examples/ accepts every object, and each exists afterwards', async () => {
    const documents = texts.flatMap((t) => t.match(/^kind: \w+$/gm) ?? []).length;
    const applied = (await kubectl(['apply', '-f', examples])).trim().split('\n');
    expect(applied).toHaveLength(documents);
    for (const line of applied) expect(line).toMatch(/ (created|configured|unchanged)$/);
    const got = (await kubectl(['get', '-f', examples, '-o', 'name'])).trim().split('\n');
    expect(got).toHaveLength(documents);
  });

  it('the Instance passes the flavor and image checks and fails only at the download, naming the URL', async () => {
    expect(urls).toHaveLength(1);
    const url = urls[0] as string;
    const inst = await vms.phase('web-1', 'Error', 90_000);
    const fault = inst.status?.fault;
    // The fault says the download failed, from where; one hypervisor here, so one attempt, and
    // the Instance fails with the agent's own reason.
    expect(fault?.reason).toBe('ImageDownloadFailed');
    expect(fault?.message).toContain(url);
    expect(inst.status?.attempts?.map((a) => a.reason)).toEqual(['ImageDownloadFailed']);
    // What `kubectl describe` lists under Events says the same.
    const described = await kubectl(['describe', 'instance', 'web-1']);
    const events = described.slice(described.indexOf('\nEvents:'));
    expect(events.split('\n').find((l) => l.includes('ImageDownloadFailed'))).toContain(url);
    // Refused on loopback: the fetch never left this machine.
    expect(fault?.message).toContain('127.0.0.1');
  });
});
