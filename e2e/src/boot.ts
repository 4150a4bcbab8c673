// An Instance applied as a user would becomes a QEMU guest that really booted with the config
// drive and address it was given, stops and starts on request, and leaves nothing behind when
// deleted. Registered by boot.test.ts (the local stack, or KOVA_E2E_KUBECONFIG's cluster) and
// by helm.test.ts (kova installed by Helm on a kubelet node).
import { describe, expect, it } from '@jest/globals';
import { ConditionType } from '@kova/crds';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { root, type Cluster } from './cluster.js';
import { Instances, type Instance } from './instances.js';

/** The scenario, on the cluster `cluster()` returns once the suite's beforeAll has run. */
export const boot = (cluster: () => Cluster) =>
  describe('a real guest, end to end', () => {
    let inst: Instance;
    let node: string;
    const vms = () => new Instances(cluster());

    it('boots an applied Instance to Active', async () => {
      const manifest = join(tmpdir(), `kova-e2e-${process.pid}.yaml`);
      writeFileSync(
        manifest,
        readFileSync(join(root, 'hack', 'demo-instance.yaml'), 'utf8').replace(
          'name: demo',
          'name: e2e-vm',
        ),
      );
      await cluster().apply(manifest);
      rmSync(manifest);
      inst = await vms().phase('e2e-vm', 'Active');
      node = inst.status?.nodeName as string;
      expect(inst.status?.powerState).toBe('Running');
      expect(cluster().nodes).toContain(node);
      expect(vms().condition(inst, ConditionType.Ready)?.status).toBe('True');
      expect(await vms().domainState(node, inst)).toBe('running');
    });

    it('prints on its serial console the instance-id, hostname and address it was given', async () => {
      expect(await vms().serialLine(inst)).toBe(
        `kova-guest: instance-id=${inst.metadata.uid} hostname=e2e-vm ip=${vms().ipOf(inst)}`,
      );
    });

    it('answers HTTP on its allocated address with its instance-id', async () => {
      expect(await vms().httpAnswer(inst)).toBe(inst.metadata.uid);
    });

    it('stops with runStrategy Halted and starts again with Always', async () => {
      await vms().setRunStrategy('e2e-vm', 'Halted');
      const stopped = await vms().phase('e2e-vm', 'Stopped');
      expect(stopped.status?.powerState).toBe('Shutdown');
      expect(await vms().domainState(node, inst)).toBe('shut off');
      await vms().setRunStrategy('e2e-vm', 'Always');
      const again = await vms().phase('e2e-vm', 'Active');
      expect(again.status?.powerState).toBe('Running');
      expect(await vms().domainState(node, inst)).toBe('running');
    });

    it('deletes to nothing: no domain, no disks, the address released, no finalizer left', async () => {
      await vms().deleteAndWait('e2e-vm');
      expect(await vms().domainState(node, inst)).toBeUndefined();
      expect(await vms().hasFiles(node, inst)).toBe(false);
      expect(await vms().allocationsOf(inst.metadata.uid)).toEqual([]);
    });
  });
