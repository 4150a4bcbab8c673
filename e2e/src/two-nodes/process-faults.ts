// Killing any part of kova at any moment loses nothing and leaves nothing behind. Each
// scenario kills or restarts one process — the operator, a node's agent, a node's libvirtd, a
// guest's QEMU (each inside its lab node), the API server — and then checks the end state:
// what runs on which node, what is on disk there, what the API holds.
import { describe, expect, it } from '@jest/globals';
import type { IHypervisor } from '@kova/crds';
import { until } from '@kova/hack';
import { heldAddresses, type Instance } from '../instances.js';
import { A, B, domainsIn, filesIn, lab, on } from './context.js';

const BURST = 50;
const PER_NODE = 25;
const NANO_MIB = 128;

const allocations = () => heldAddresses(lab().cluster.api);

/** Waits for the Instance's power state to leave Running; returns how long after `since`. */
async function powerChange(name: string, since: number): Promise<{ ms: number; inst: Instance }> {
  const inst = await until(
    `${name} to leave powerState Running`,
    async () => {
      const i = await lab().vms.get(name);
      return i?.status?.powerState !== 'Running' && i;
    },
    30_000,
    20,
  );
  return { ms: Date.now() - since, inst: inst as Instance };
}

/**
 * Instances counted by phase, node, failing conditions, fault and failed attempts (node:reason),
 * for a failure message.
 */
function summary(list: Instance[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const i of list) {
    const c = i.status?.conditions
      ?.filter((x) => x.status === 'False')
      .map((x) => `${x.type}:${x.reason}`)
      .join(',');
    const tried = i.status?.attempts?.map((a) => `${a.node}:${a.reason}`).join(',');
    const k = `${i.status?.phase}/${i.status?.nodeName}/${c}/${i.status?.fault?.reason}/${tried}`;
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

/** A guest on A to kill things under; the scenarios share it (and recreate it if needed). */
async function steadyGuest(): Promise<Instance> {
  const { vms } = lab();
  if (!(await vms.get('steady'))) await vms.create('steady', on(A));
  return vms.phase('steady', 'Active');
}

/** Room for exactly PER_NODE m1.nano per node (memory; vCPUs to spare), or back to defaults. */
async function limitRoom(limit: boolean): Promise<void> {
  const { hypervisors } = lab();
  for (const h of await hypervisors.list()) {
    const capacity = h.status?.capacity as { vcpus: number; memoryMiB: number };
    await hypervisors.setSpec(
      h.metadata?.name as string,
      limit
        ? {
            reservedMemoryMiB: capacity.memoryMiB - PER_NODE * NANO_MIB,
            cpuAllocationRatio: Math.min(64, Math.ceil((2 * PER_NODE) / capacity.vcpus)),
          }
        : { reservedMemoryMiB: null, cpuAllocationRatio: null },
    );
  }
}

function operatorBurst(): void {
  describe('kill -9 of the operator during a burst of 50 creates', () => {
    it("ends with all 50 Active, none over a hypervisor's capacity, every address unique, nothing leaked", async () => {
      // A claim lost or doubled by the crash shows as a node over 25 or an Instance left
      // without a host.
      const { cluster, vms, hypervisors } = lab();
      await limitRoom(true);
      const names = Array.from({ length: BURST }, (_, i) => `burst-${i}`);
      try {
        const creating = Promise.all(names.map((n) => vms.create(n)));
        await until(
          'some bound',
          async () => (await vms.list()).filter((i) => i.status?.nodeName).length >= 10,
          60_000,
          20,
        );
        await cluster.kova.killProcess('operator');
        const boundAtKill = (await vms.list()).filter((i) => i.status?.nodeName).length;
        await creating;
        cluster.kova.startOperator();

        let seen: Instance[] = [];
        const all = await until(
          'all 50 Active',
          async () => {
            seen = (await vms.list()).filter((i) => names.includes(i.metadata.name));
            return seen.filter((i) => i.status?.phase === 'Active').length === BURST && seen;
          },
          // 50 guests booting under TCG on two cores: ~150 s alone, more beside other work.
          360_000,
          500,
        ).catch((err: Error) => {
          throw new Error(`${err.message}; last seen: ${JSON.stringify(summary(seen))}`);
        });
        expect(boundAtKill).toBeLessThan(BURST);
        const perNode = new Map<string, number>();
        for (const i of all) {
          const node = i.status?.nodeName as string;
          perNode.set(node, (perNode.get(node) ?? 0) + 1);
        }
        expect(Object.fromEntries(perNode)).toEqual({ [A]: PER_NODE, [B]: PER_NODE });
        const ips = all.map((i) => vms.ipOf(i));
        const macs = all.map((i) => i.status?.interfaces?.[0]?.mac);
        expect(new Set(ips).size).toBe(BURST);
        expect(new Set(macs).size).toBe(BURST);
        expect((await allocations()).map((a) => a.ip).sort()).toEqual([...ips].sort());
        // Each node runs the domains of exactly the Instances bound to it.
        for (const node of [A, B]) {
          const bound = all.filter((i) => i.status?.nodeName === node);
          const domains = await domainsIn(node);
          expect(domains).toHaveLength(PER_NODE);
          for (const i of bound) expect(await vms.domainState(node, i)).toBe('running');
        }
        expect(await domainsIn()).toEqual([]);
        await until(
          'each agent to count its 25',
          async () =>
            (await hypervisors.list()).every(
              (h: IHypervisor) => h.status?.instanceCount === PER_NODE,
            ),
          30_000,
          500,
        );
      } finally {
        // Also after a failure: the scenarios below need the room back.
        await Promise.all(names.map((n) => vms.delete(n).catch(() => undefined)));
        await until(
          'the burst to be deleted',
          async () => (await vms.list()).every((i) => !i.metadata.name.startsWith('burst-')),
          240_000,
          500,
        );
        await limitRoom(false);
      }
      for (const node of [A, B]) expect(await domainsIn(node)).toEqual([]);
      expect(await allocations()).toEqual([]);
    }, 720_000);
  });
}

function agentKilledMidBoot(): void {
  describe('kill -9 of an agent in the middle of a boot', () => {
    it('resumes the boot after a restart; the domains already running keep their QEMU process', async () => {
      const { cluster, vms, images, lab: nodes } = lab();
      const steady = await steadyGuest();
      const pid = await vms.qemuPid(A, steady);
      const slow = await images.add('held-image', 'hold');
      await vms.create('interrupted', { ...on(A), image: slow.name });
      await until('the agent downloading the image', () => slow.requests > 0, 60_000);
      // The download starts while the networks are plugged; the phase follows once plugged.
      await vms.phase('interrupted', 'BlockDeviceMapping');
      await nodes.killAgent(A);
      expect((await vms.get('interrupted'))?.status?.phase).toBe('BlockDeviceMapping');
      slow.release();
      await nodes.startAgent(A);

      const booted = await vms.phase('interrupted', 'Active');
      expect(booted.status?.nodeName).toBe(A);
      expect(await vms.domainState(A, booted)).toBe('running');
      expect(await vms.qemuPid(A, steady)).toBe(pid);
      expect((await vms.get('steady'))?.status?.phase).toBe('Active');
      const cache = `${cluster.stateDirOf(A)}/images`;
      await until(
        "the killed download's partial file to be collected",
        async () => (await filesIn(A, cache)).every((f) => !f.includes('.partial.')),
        30_000,
        200,
      );
      await vms.deleteAndWait('interrupted');
    });
  });
}

function libvirtdRestarted(): void {
  describe('libvirtd restarted while guests run', () => {
    it('leaves the guests running and the agent reconnects by itself: it sees a crash afterwards', async () => {
      const { vms, lab: nodes } = lab();
      const steady = await steadyGuest();
      const pid = await vms.qemuPid(A, steady);
      await nodes.restartLibvirtd(A);
      expect(await vms.qemuPid(A, steady)).toBe(pid);
      expect((await vms.get('steady'))?.status?.powerState).toBe('Running');
      // Only an agent with a live connection and event callbacks notices this.
      await vms.killQemu(A, steady);
      await powerChange('steady', Date.now());
      await until(
        'steady restarted',
        async () =>
          (await vms.get('steady'))?.status?.powerState === 'Running' &&
          (await vms.qemuPid(A, steady)) !== pid,
        30_000,
        100,
      );
    });
  });
}

function qemuKilled(): void {
  describe('the QEMU process of a guest killed', () => {
    it('shows in powerState within 3 s and Always restarts it with a new process', async () => {
      const { vms } = lab();
      const steady = await steadyGuest();
      const killedAt = Date.now();
      const pid = await vms.killQemu(A, steady);
      const { ms, inst } = await powerChange('steady', killedAt);
      // The libvirt event, not the agent's periodic resync (60 s by default), reports it.
      expect(ms).toBeLessThan(3000);
      expect(['Shutdown', 'Crashed']).toContain(inst.status?.powerState);
      const back = await until(
        'steady running again',
        async () => {
          const i = await vms.get('steady');
          return i?.status?.powerState === 'Running' && i.status.phase === 'Active' && i;
        },
        30_000,
        100,
      );
      expect(await vms.qemuPid(A, back)).not.toBe(pid);
      expect(await vms.domainState(A, back)).toBe('running');
    });

    it('leaves a RerunOnFailure guest off after it shuts down cleanly, and restarts it after a kill', async () => {
      const { cluster, vms } = lab();
      const rerun = await vms
        .create('rerun', { ...on(B), runStrategy: 'RerunOnFailure' })
        .then(() => vms.phase('rerun', 'Active'));
      const pid = await vms.killQemu(B, rerun);
      await until(
        'rerun restarted after the kill',
        async () =>
          (await vms.get('rerun'))?.status?.powerState === 'Running' &&
          (await vms.qemuPid(B, rerun).catch(() => pid)) !== pid,
        30_000,
        100,
      );
      await vms.serialLine(rerun); // the guest is up and handles ACPI
      await cluster.onNode(B, ['virsh', '-c', cluster.libvirtUri, 'shutdown', rerun.metadata.uid]);
      const stopped = await vms.phase('rerun', 'Stopped', 60_000);
      expect(stopped.status?.powerState).toBe('Shutdown');
      await new Promise((r) => setTimeout(r, 4000)); // more than a resync: it stays off
      expect(await vms.domainState(B, rerun)).toBe('shut off');
      await vms.deleteAndWait('rerun');
    });
  });
}

function apiServerRestarted(): void {
  describe('kube-apiserver and etcd restarted', () => {
    it('operator and agents carry on without a restart: a change made meanwhile is reported, new Instances boot', async () => {
      const { cluster, vms } = lab();
      const steady = await steadyGuest();
      const pid = await vms.qemuPid(A, steady);
      await cluster.kova.cp.stopComponent('kube-apiserver');
      await cluster.kova.cp.stopComponent('etcd');
      try {
        await vms.killQemu(A, steady); // the agent restarts it while it cannot report
        await until(
          'steady restarted on the node',
          async () => (await vms.qemuPid(A, steady).catch(() => pid)) !== pid,
          30_000,
          100,
        );
      } finally {
        await cluster.kova.cp.startComponent('etcd');
        await cluster.kova.cp.startComponent('kube-apiserver');
      }

      const after = await vms
        .create('after-restart')
        .then(() => vms.phase('after-restart', 'Active'));
      expect(await vms.domainState(after.status?.nodeName as string, after)).toBe('running');
      const now = await vms.get('steady');
      expect(now?.status?.phase).toBe('Active');
      expect(now?.status?.powerState).toBe('Running');
      await vms.deleteAndWait('after-restart');
    });
  });
}

function deletedWhileAgentDown(): void {
  describe('an Instance deleted while its agent is down', () => {
    it('is deleted after the node-down timeout; the agent, back, removes its domain and disks', async () => {
      const { vms, lab: nodes } = lab();
      const orphan = await vms.create('orphan', on(B)).then(() => vms.phase('orphan', 'Active'));
      await nodes.killAgent(B);
      const deletedAt = Date.now();
      await vms.delete('orphan');
      await until(
        'the deletion to complete without the agent',
        async () => !(await vms.get('orphan')),
        60_000,
        200,
      );
      expect(Date.now() - deletedAt).toBeGreaterThan(5000);
      expect(await vms.domainState(B, orphan)).toBe('running');
      // #12.11: its VM still runs, so its address is held for the node, not handed out again.
      expect((await vms.allocationsOf(orphan.metadata.uid)).length).toBe(1);

      await nodes.startAgent(B);
      await until(
        'the orphan domain to be collected',
        async () => (await vms.domainState(B, orphan)) === undefined,
        60_000,
        200,
      );
      expect(await vms.hasFiles(B, orphan)).toBe(false);
      // The agent's report no longer lists the domain: the address is free again.
      await until(
        'the held address to be released',
        async () => (await vms.allocationsOf(orphan.metadata.uid)).length === 0,
        60_000,
        200,
      );
    });
  });
}

export function processFaults(): void {
  operatorBurst();
  agentKilledMidBoot();
  libvirtdRestarted();
  qemuKilled();
  apiServerRestarted();
  deletedWhileAgentDown();
}
