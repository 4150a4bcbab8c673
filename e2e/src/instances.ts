// What a user does with Instances and what they check, for the e2e suites: create, wait for a
// phase, read conditions, and look at the guest on its node (domain, serial console, HTTP).
import type { CustomObjectsApi } from '@kubernetes/client-node';
import { GROUP, VERSION, type IIPBlock, type IInstance } from '@kova/crds';
import { until } from '@kova/hack';
import type { Cluster } from './cluster.js';

export type Instance = IInstance & { metadata: { name: string; namespace: string; uid: string } };

export class Instances {
  constructor(private readonly c: Cluster) {}

  private ref(name: string) {
    return {
      group: GROUP,
      version: VERSION,
      plural: 'instances',
      namespace: this.c.namespace,
      name,
    };
  }

  async create(name: string, spec: Partial<IInstance['spec']> = {}): Promise<Instance> {
    const body = {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: 'Instance',
      metadata: { name, namespace: this.c.namespace },
      spec: { flavor: 'm1.nano', image: 'kova-guest', networks: [{ network: 'default' }], ...spec },
    };
    return (await this.c.api.createNamespacedCustomObject({ ...this.ref(name), body })) as Instance;
  }

  get(name: string): Promise<Instance | undefined> {
    return this.c.api.getNamespacedCustomObject(this.ref(name)).then(
      (i) => i as Instance,
      () => undefined,
    );
  }

  async list(): Promise<Instance[]> {
    const { group, version, plural, namespace } = this.ref('');
    return (
      (await this.c.api.listNamespacedCustomObject({ group, version, plural, namespace })) as {
        items: Instance[];
      }
    ).items;
  }

  /** Waits for a phase; an unexpected fault fails at once with its reason. */
  phase(name: string, want: string, timeoutMs = 90_000): Promise<Instance> {
    return until(
      `${name} in phase ${want}`,
      async () => {
        const i = await this.get(name);
        if (want !== 'Error' && i?.status?.phase === 'Error')
          throw new Error(`${name} failed: ${i.status.fault?.reason}: ${i.status.fault?.message}`);
        return i?.status?.phase === want ? i : undefined;
      },
      timeoutMs,
      100,
    );
  }

  condition(inst: Instance | undefined, type: string) {
    return inst?.status?.conditions?.find((c) => c.type === type);
  }

  setRunStrategy(name: string, value: string): Promise<unknown> {
    return this.c.api.patchNamespacedCustomObject({
      ...this.ref(name),
      body: [{ op: 'replace', path: '/spec/runStrategy', value }],
    });
  }

  async delete(name: string): Promise<void> {
    await this.c.api.deleteNamespacedCustomObject(this.ref(name));
  }

  async deleteAndWait(name: string, timeoutMs = 60_000): Promise<void> {
    await this.delete(name);
    await until(`${name} to be gone`, async () => !(await this.get(name)), timeoutMs, 100);
  }

  async allocationsOf(uid: string): Promise<HeldAddress[]> {
    return (await heldAddresses(this.c.api)).filter((a) => a.instance.uid === uid);
  }

  // ---- the guest, seen from its node

  ipOf(inst: Instance): string {
    return inst.status?.interfaces?.[0]?.ip as string;
  }

  instanceDir(node: string, inst: Instance): string {
    return `${this.c.stateDirOf(node)}/instances/${inst.metadata.uid}`;
  }

  /** virsh domstate of the Instance's domain on `node`, or undefined when there is none. */
  domainState(node: string, inst: Instance): Promise<string | undefined> {
    return this.c
      .onNode(node, ['virsh', '-c', this.c.libvirtUri, 'domstate', inst.metadata.uid])
      .then(
        (s) => s.trim(),
        () => undefined,
      );
  }

  /** The node named in the kova metadata of the domain, i.e. which agent owns it. */
  async domainOwner(node: string, inst: Instance): Promise<string | undefined> {
    const xml = await this.c
      .onNode(node, ['virsh', '-c', this.c.libvirtUri, 'dumpxml', inst.metadata.uid])
      .catch(() => '');
    return /<kova:instance [^>]*\bnode="([^"]*)"/.exec(xml)?.[1];
  }

  /** The pid of the Instance's QEMU process as `node` sees it (libvirt's pid file there). */
  async qemuPid(node: string, inst: Instance): Promise<number> {
    const name = (
      await this.c.onNode(node, ['virsh', '-c', this.c.libvirtUri, 'domname', inst.metadata.uid])
    ).trim();
    return Number((await this.c.onNode(node, ['cat', `/run/libvirt/qemu/${name}.pid`])).trim());
  }

  /** kill -9 of the Instance's QEMU process, on its node; returns the pid it had. */
  async killQemu(node: string, inst: Instance): Promise<number> {
    const pid = await this.qemuPid(node, inst);
    await this.c.onNode(node, ['kill', '-KILL', String(pid)]);
    return pid;
  }

  async hasFiles(node: string, inst: Instance): Promise<boolean> {
    return this.c.onNode(node, ['test', '-e', this.instanceDir(node, inst)]).then(
      () => true,
      () => false,
    );
  }

  serialLine(inst: Instance, timeoutMs = 90_000): Promise<string> {
    const node = inst.status?.nodeName as string;
    return until(
      `${inst.metadata.name}'s serial line`,
      async () => {
        const log = await this.c
          .onNode(node, ['cat', `${this.instanceDir(node, inst)}/console.log`])
          .catch(() => '');
        return /kova-guest: [^\r\n]*/.exec(log)?.[0];
      },
      timeoutMs,
      250,
    );
  }

  /** What the guest answers on http://<its IP>/, asked from its node. */
  httpAnswer(inst: Instance, timeoutMs = 90_000): Promise<string> {
    const node = inst.status?.nodeName as string;
    return until(
      `HTTP from ${inst.metadata.name}`,
      async () => {
        const body = await this.c
          .onNode(node, ['curl', '-sf', '--max-time', '2', `http://${this.ipOf(inst)}/`])
          .catch(() => '');
        return body.trim() || undefined;
      },
      timeoutMs,
      250,
    );
  }
}

/** An address as its IPBlock lists it. */
export type HeldAddress = NonNullable<IIPBlock['spec']['addresses']>[number] & { network: string };

/** Every address held on every Network, from the IPBlocks. */
export async function heldAddresses(api: CustomObjectsApi): Promise<HeldAddress[]> {
  const list = (await api.listClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: 'ipblocks',
  })) as { items: IIPBlock[] };
  return list.items.flatMap((b) =>
    (b.spec.addresses ?? []).map((a) => ({ network: b.spec.network, ...a })),
  );
}
