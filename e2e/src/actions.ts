// Day-2 actions as a user asks for them: `kubectl create` of an InstanceAction (requestedBy is
// the user, as `kubectl auth whoami` says), `kubectl get` to follow it, and the guest itself
// (its boot id, its HTTP answer, a word on its root disk) to see what the action did.
import { kubectlPath, until } from '@kova/hack';
import type { InstanceActionObject } from '@kova/crds';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Cluster } from './cluster.js';
import type { Instance } from './instances.js';

const run = promisify(execFile);

export class Actions {
  private user: string | undefined;

  constructor(private readonly c: Cluster) {}

  /** kubectl in the suite's namespace; rejects with kubectl's stderr. */
  async kubectl(args: string[], input?: string): Promise<string> {
    const argv = ['--kubeconfig', this.c.kubeconfigPath, '-n', this.c.namespace, ...args];
    const child = run(kubectlPath(), argv, { encoding: 'utf8' });
    if (input !== undefined) child.child.stdin?.end(input);
    try {
      return (await child).stdout;
    } catch (err) {
      throw new Error(String((err as { stderr?: string }).stderr ?? err));
    }
  }

  async whoami(): Promise<string> {
    this.user ??= (
      await this.kubectl(['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}'])
    ).trim();
    return this.user;
  }

  /** Creates an action as the user; returns its name. */
  async request(
    instance: string,
    action: string,
    extra: Record<string, unknown> = {},
  ): Promise<string> {
    const body = {
      apiVersion: 'compute.kova.dev/v1alpha1',
      kind: 'InstanceAction',
      metadata: { generateName: `${instance}-${action.toLowerCase()}-` },
      spec: { instance, action, requestedBy: await this.whoami(), ...extra },
    };
    const out = await this.kubectl(['create', '-o', 'name', '-f', '-'], JSON.stringify(body));
    return out.trim().split('/').pop() as string;
  }

  async get(name: string): Promise<InstanceActionObject> {
    return JSON.parse(
      await this.kubectl(['get', 'ia', name, '-o', 'json']),
    ) as InstanceActionObject;
  }

  /** Waits until the action has finished; returns it. */
  finished(name: string, timeoutMs = 120_000): Promise<InstanceActionObject> {
    return until(
      `InstanceAction ${name} to finish`,
      async () => {
        const a = await this.get(name);
        const p = a.status?.phase;
        return p === 'Succeeded' || p === 'Failed' ? a : undefined;
      },
      timeoutMs,
      200,
    );
  }

  /** Requests and waits; fails with the action's reason unless it succeeded. */
  async succeed(instance: string, action: string, extra: Record<string, unknown> = {}) {
    const a = await this.finished(await this.request(instance, action, extra));
    if (a.status?.phase !== 'Succeeded')
      throw new Error(`${action} failed: ${a.status?.reason}: ${a.status?.message}`);
    return a;
  }

  /** What the guest answers on `path`, asked from its node; '' when it does not answer. */
  async guest(inst: Instance, path: string): Promise<string> {
    const ip = inst.status?.interfaces?.[0]?.ip as string;
    return this.c
      .onNode(inst.status?.nodeName as string, [
        'curl',
        '-sf',
        '--max-time',
        '2',
        `http://${ip}${path}`,
      ])
      .then(
        (s) => s.trim(),
        () => '',
      );
  }

  /** Waits until the guest answers `path`; returns the answer. */
  answer(inst: Instance, path: string, timeoutMs = 90_000): Promise<string> {
    return until(
      `${inst.metadata.name} to answer ${path}`,
      async () => (await this.guest(inst, path)) || undefined,
      timeoutMs,
      250,
    );
  }
}
