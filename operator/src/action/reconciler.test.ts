// The operator's judgement of InstanceActions against fakes of its view and the API: for each
// situation, the writes it makes (sample-controller's expected-action tests).
import { describe, expect, it } from '@jest/globals';
import { quietLogger } from '@kova/controller-kit';
import type { ActionStatus, InstanceActionObject, InstanceObject } from '@kova/crds';
import { ActionReconciler, TAKE_UP_TIMEOUT_MS } from './reconciler.js';

const NOW = Date.parse('2026-11-25T10:00:00Z');
let rv = 10;

function action(
  name: string,
  spec: Partial<InstanceActionObject['spec']>,
  over: Partial<InstanceActionObject> = {},
) {
  return {
    apiVersion: 'compute.kova.dev/v1alpha1',
    kind: 'InstanceAction',
    metadata: {
      name,
      namespace: 'ns',
      uid: `uid-${name}`,
      resourceVersion: String(++rv),
      creationTimestamp: '2026-11-25T09:59:00Z',
    },
    spec: { instance: 'vm', action: 'Reboot', requestedBy: 'alice', ...spec },
    ...over,
  } as InstanceActionObject;
}

function vm(over: Partial<NonNullable<InstanceObject['status']>> = {}, runStrategy = 'Manual') {
  return {
    metadata: {
      name: 'vm',
      namespace: 'ns',
      uid: 'vm-uid',
      creationTimestamp: '2026-11-25T09:00:00Z',
    },
    spec: { flavor: 'f', image: 'i', networks: [], runStrategy },
    status: { phase: 'Active', powerState: 'Running', nodeName: 'node-a', ...over },
  } as unknown as InstanceObject;
}

function harness(actions: InstanceActionObject[], inst: InstanceObject | undefined, downMs = 0) {
  const writes: string[] = [];
  const statuses = new Map<string, ActionStatus>();
  const r = new ActionReconciler({
    actions: { list: () => actions },
    instances: { get: () => inst },
    downForMs: () => downMs,
    api: {
      get: async (_ns, name) => actions.find((a) => a.metadata.name === name),
      setStatus: async (a, s) => {
        writes.push(`status ${a.metadata.name} ${s.phase} ${s.reason}`);
        statuses.set(a.metadata.name, s);
        return { ...a, metadata: { ...a.metadata, resourceVersion: String(++rv) }, status: s };
      },
      setOwner: async (a, i) => void writes.push(`owner ${a.metadata.name} ${i.metadata.uid}`),
      delete: async (a) => void writes.push(`delete ${a.metadata.name}`),
    },
    config: { historyLimit: 2, historyMaxAgeMs: 3_600_000 },
    logger: quietLogger,
    now: () => NOW,
  });
  return { sync: () => r.sync('ns/vm'), writes, statuses };
}

const owned = {
  ownerReferences: [{ apiVersion: 'v', kind: 'Instance', name: 'vm', uid: 'vm-uid' }],
};

describe('ActionReconciler', () => {
  it('accepts an action that makes sense, for the node the Instance is on, and makes the Instance its owner', async () => {
    const h = harness([action('a', {})], vm());
    await h.sync();
    expect(h.writes).toEqual(['status a Accepted Accepted', 'owner a vm-uid']);
    expect(h.statuses.get('a')).toMatchObject({ nodeName: 'node-a', instanceUID: 'vm-uid' });
  });

  it('refuses at once what the state does not allow, with the reason', async () => {
    const h = harness([action('a', { action: 'Unpause' })], vm());
    await h.sync();
    expect(h.writes[0]).toBe('status a Failed InvalidState');
    expect(h.statuses.get('a')?.completionTime).toBe(new Date(NOW).toISOString());
  });

  it('refuses a Stop that runStrategy Always would undo', async () => {
    const h = harness([action('a', { action: 'Stop' })], vm({}, 'Always'));
    await h.sync();
    expect(h.writes[0]).toBe('status a Failed RunStrategyConflict');
  });

  it('accepts the oldest of two new actions and refuses the other (ActionInProgress)', async () => {
    const first = action('first', {});
    const second = action('second', { action: 'Pause' });
    const h = harness([second, first], vm());
    await h.sync();
    expect(h.writes.filter((w) => w.startsWith('status'))).toEqual([
      'status first Accepted Accepted',
      'status second Failed ActionInProgress',
    ]);
    expect(h.statuses.get('second')?.message).toContain('first');
  });

  it('refuses a new action against one already accepted, whatever their order in the view', async () => {
    // B was created before A's acceptance was written: A's resourceVersion is now the newer.
    const b = action('b', { action: 'Pause' });
    const a = action(
      'a',
      {},
      { status: { phase: 'Accepted', instanceUID: 'vm-uid', nodeName: 'node-a' } },
    );
    const h = harness([b, a], vm());
    await h.sync();
    expect(h.writes[0]).toBe('status b Failed ActionInProgress');
  });

  it("fails an action its node's agent never takes up (an old agent), so the Instance is not blocked", async () => {
    const old = new Date(NOW - TAKE_UP_TIMEOUT_MS - 1000).toISOString();
    const stuck = action(
      'a',
      {},
      { status: { phase: 'Accepted', instanceUID: 'vm-uid', nodeName: 'node-a' } },
    );
    stuck.metadata.creationTimestamp = old as never;
    const h = harness([stuck], vm());
    await h.sync();
    expect(h.writes[0]).toBe('status a Failed NotTakenUp');
  });

  it('does not adopt the history of an earlier Instance of the same name', async () => {
    const earlier = action(
      'old',
      {},
      {
        status: {
          phase: 'Succeeded',
          instanceUID: 'earlier-uid',
          completionTime: '2026-11-25T09:30:00Z',
        },
      },
    );
    const h = harness([earlier], vm());
    await h.sync();
    expect(h.writes).toEqual([]);
  });

  it('refuses an action on a missing Instance, and on a node without heartbeat', async () => {
    const missing = harness([action('a', {})], undefined);
    await missing.sync();
    expect(missing.writes).toEqual(['status a Failed InstanceNotFound']);
    const down = harness([action('a', {})], vm(), 50_000);
    await down.sync();
    expect(down.writes[0]).toBe('status a Failed NodeUnreachable');
  });

  it('fails an action in flight whose node went silent, or whose Instance is being deleted', async () => {
    const accepted = {
      status: { phase: 'Accepted' as const, instanceUID: 'vm-uid', nodeName: 'node-a' },
    };
    const silent = harness(
      [action('a', {}, { ...accepted, metadata: { ...action('a', {}).metadata, ...owned } })],
      vm(),
      1,
    );
    await silent.sync();
    expect(silent.writes).toEqual(['status a Failed NodeUnreachable']);
    const gone = vm();
    gone.metadata.deletionTimestamp = '2026-11-25T09:59:30Z' as never;
    const deleting = harness([action('a', {}, accepted)], gone);
    await deleting.sync();
    expect(deleting.writes[0]).toBe('status a Failed InstanceDeleting');
  });

  it('keeps the newest finished actions up to the limit and deletes expired ones', async () => {
    const done = (name: string, finished: string) =>
      action(
        name,
        {},
        {
          metadata: { ...action(name, {}).metadata, ...owned },
          status: { phase: 'Succeeded', completionTime: finished },
        },
      );
    const h = harness(
      [
        done('old', '2026-11-25T08:00:00Z'),
        done('b', '2026-11-25T09:50:00Z'),
        done('c', '2026-11-25T09:51:00Z'),
        done('d', '2026-11-25T09:52:00Z'),
      ],
      vm(),
    );
    const next = await h.sync();
    expect(h.writes).toEqual(['delete old', 'delete b']);
    // The next expiry (c, finished 09:51) is when the sync comes back.
    expect(next).toEqual({ requeueAfterMs: 51 * 60_000 });
  });
});
