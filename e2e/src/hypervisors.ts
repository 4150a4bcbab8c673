// What an admin does with Hypervisors in the e2e suites: wait for the agents to report, label
// them (for Instance nodeSelectors) and change their capacity settings.
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { GROUP, VERSION, type IHypervisor } from '@kova/crds';
import { until } from '@kova/hack';
import type { Cluster } from './cluster.js';

const ref = { group: GROUP, version: VERSION, plural: 'hypervisors' };

export class Hypervisors {
  constructor(private readonly c: Cluster) {}

  async list(): Promise<IHypervisor[]> {
    return ((await this.c.api.listClusterCustomObject(ref)) as { items: IHypervisor[] }).items;
  }

  get(name: string): Promise<IHypervisor> {
    return this.c.api.getClusterCustomObject({ ...ref, name }) as Promise<IHypervisor>;
  }

  /** Waits until every node's agent has reported capacity; labels each `kova.test/node=<name>`. */
  async ready(): Promise<void> {
    await until(`${this.c.nodes.length} hypervisors reporting`, async () => {
      const reporting = (await this.list()).filter((h) => h.status?.capacity);
      return reporting.length >= this.c.nodes.length;
    });
    for (const name of this.c.nodes)
      await this.patch(name, { metadata: { labels: { 'kova.test/node': name } } });
  }

  /** Sets or (with null) clears admin settings of spec, e.g. reservedMemoryMiB. */
  setSpec(name: string, spec: Record<string, number | boolean | null>): Promise<unknown> {
    return this.patch(name, { spec });
  }

  private patch(name: string, body: object): Promise<unknown> {
    return this.c.api.patchClusterCustomObject(
      { ...ref, name, body },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }
}
