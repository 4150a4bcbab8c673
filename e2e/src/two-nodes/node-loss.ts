// A whole node lost, as a user sees it with kubectl: node B cut off its network (partition)
// and node B powered off (kill: its libvirtd, agent and every QEMU at once). The operator
// learns of it only from B's heartbeat Lease going stale; new Instances then go to A, and
// one that can only run on B waits, its Scheduled condition saying a hypervisor is down. What
// B ran is not moved (evacuation is issue #16): after heal or power-on, B's agent is back, its
// Instances are Active there again, and no guest ever runs on two nodes.
import { describe, expect, it } from '@jest/globals';
import { CoordinationV1Api } from '@kubernetes/client-node';
import { loadKubeConfig } from '@kova/controller-kit';
import { ConditionType } from '@kova/crds';
import { until } from '@kova/hack';
import type { Instance } from '../instances.js';
import { A, B, domainsIn, expectGuestOnlyOn, lab, on, OPERATOR_ENV } from './context.js';

/** The operator's heartbeat timeout (OPERATOR_ENV), and a margin for its view to catch up. */
const HEARTBEAT_TIMEOUT_MS = Number(OPERATOR_ENV.KOVA_HEARTBEAT_TIMEOUT_SECONDS) * 1000;
const MARGIN_MS = 2000;

async function leaseRenewedAt(node: string): Promise<number> {
  const leases = loadKubeConfig(lab().cluster.kubeconfigPath).makeApiClient(CoordinationV1Api);
  const lease = await leases.readNamespacedLease({ name: node, namespace: 'kova-system' });
  return new Date(lease.spec?.renewTime ?? 0).getTime();
}

/**
 * What a user sees of a lost node's heartbeat: `kubectl get lease -n kova-system lab-b` stands
 * still, and once it is older than the operator's heartbeat timeout the node counts as down.
 */
async function heartbeatStops(node: string): Promise<void> {
  const renewed = await until(
    `${node}'s heartbeat Lease to be older than the heartbeat timeout`,
    async () => {
      const at = await leaseRenewedAt(node);
      return Date.now() - at > HEARTBEAT_TIMEOUT_MS + MARGIN_MS && at;
    },
    HEARTBEAT_TIMEOUT_MS + 30_000,
    500,
  );
  expect(await leaseRenewedAt(node)).toBe(renewed);
}

/**
 * An Instance that only B could take is refused, with B counted as down in its Scheduled
 * condition (what the scheduler tells a user about the hypervisors it could not use).
 */
async function pinnedToDownB(name: string): Promise<void> {
  const { vms } = lab();
  await vms.create(name, on(B));
  const refused = await until(
    `${name} refused`,
    async () => {
      const c = vms.condition(await vms.get(name), ConditionType.Scheduled);
      return c?.reason === 'NoValidHost' && c;
    },
    30_000,
    200,
  );
  expect(refused.message).toBe('0/2 hypervisors: 1 hypervisor down, 1 node selector mismatch');
}

/** A new Instance free to go anywhere lands on A, and runs there only. */
async function expectNewInstanceOnA(name: string): Promise<void> {
  const { vms } = lab();
  const inst = await vms.create(name).then(() => vms.phase(name, 'Active'));
  expect(inst.status?.nodeName).toBe(A);
  await expectGuestOnlyOn(inst);
}

/** After B is back: `pinned` boots there, `held` is Active and Running there and only there. */
async function expectBackOnB(pinned: string, held: string): Promise<Instance> {
  const { vms } = lab();
  const late = await vms.phase(pinned, 'Active', 120_000);
  expect(late.status?.nodeName).toBe(B);
  await expectGuestOnlyOn(late);
  const back = await until(
    `${held} Active and Running on ${B}`,
    async () => {
      const i = await vms.get(held);
      return i?.status?.phase === 'Active' && i.status.powerState === 'Running' && i;
    },
    120_000,
    200,
  );
  expect(back.status?.nodeName).toBe(B);
  await expectGuestOnlyOn(back);
  return back;
}

export function nodeLoss(): void {
  describe('node B lost', () => {
    it('partitioned: reported down, new Instances go to A, its guest runs on; healed, it is back and nothing runs twice', async () => {
      const { vms, lab: nodes } = lab();
      const held = await vms.create('held', on(B)).then(() => vms.phase('held', 'Active'));
      const pid = await vms.qemuPid(B, held);
      await nodes.partition(B);
      try {
        await heartbeatStops(B);
        await pinnedToDownB('pinned');
        await expectNewInstanceOnA('while-cut');
        // Cut off is not dead: the guest runs on in B, untouched.
        expect(await vms.qemuPid(B, held)).toBe(pid);
        expect(await vms.httpAnswer(held)).toBe(held.metadata.uid);
      } finally {
        await nodes.heal(B);
      }
      const back = await expectBackOnB('pinned', 'held');
      expect(await vms.qemuPid(B, back)).toBe(pid);
      for (const n of ['held', 'pinned', 'while-cut']) await vms.deleteAndWait(n);
    }, 300_000);

    it('killed whole: its guests die with it, reported down, new Instances go to A; powered on, its agent starts them again, nothing runs twice', async () => {
      const { vms, lab: nodes } = lab();
      const lost = await vms.create('lost', on(B)).then(() => vms.phase('lost', 'Active'));
      await nodes.kill(B);
      try {
        await heartbeatStops(B);
        await pinnedToDownB('pinned-dead');
        await expectNewInstanceOnA('while-dead');
        // Its guest is not moved (no evacuation): not on A, nor in this machine's libvirtd.
        expect(await vms.domainState(A, lost)).toBeUndefined();
        expect(await domainsIn()).toEqual([]);
      } finally {
        await nodes.restart(B);
      }
      await expectBackOnB('pinned-dead', 'lost');
      for (const n of ['lost', 'pinned-dead', 'while-dead']) await vms.deleteAndWait(n);
    }, 300_000);
  });
}
