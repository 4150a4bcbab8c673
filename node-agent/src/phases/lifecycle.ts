// The ends of an Instance's life on the node: the node-cleanup finalizer set before anything is
// built, deletion (stop, remove the domain and its files, release the finalizer) and a failed
// Instance (drop what the agent reported that no longer holds).
import { apiStatus } from '@kova/controller-kit';
import { ConditionType, instanceRef, NODE_CLEANUP_FINALIZER } from '@kova/crds';
import type { StepContext } from '../build/step.js';
import { keyOf, type Instance } from '../deps.js';
import { lookupDomain, powerStateOf, removeDomain } from '../domain-removal.js';
import { DomainState } from '../libvirt/index.js';
import { lv, tolerateInvalid } from '../libvirt-call.js';
import { POLL_MS } from '../power/policy.js';
import type { PhaseResult } from './result.js';

/**
 * The node-cleanup finalizer, set by the agent of the node the Instance is handed to before it
 * reports a build phase or defines the domain, so a delete waits for the domain and disks to
 * go (disks made meanwhile for an Instance deleted first are the garbage collector's). Not the
 * operator's at binding: an Instance deleted before its hand-off has nothing on any node, and
 * binding costs one API write less. Refused (409) on a view that changed, deletion included: the API
 * server takes no new finalizer on an object being deleted, and the retried sync sees it.
 */
export async function holdForCleanup(c: StepContext): Promise<Instance> {
  const { metadata } = c.inst;
  const has = metadata.finalizers ?? [];
  if (has.includes(NODE_CLEANUP_FINALIZER)) return c.inst;
  return (await c.d.patcher.setFinalizers(instanceRef(c.inst), metadata.resourceVersion as string, [
    ...has,
    NODE_CLEANUP_FINALIZER,
  ])) as Instance;
}

export class TeardownHandler {
  private readonly shutdownRequested = new Map<string, number>();

  /**
   * Ready goes False (reason Deleting) first; the guest gets a graceful shutdown without holding a
   * worker (the sync requeues while it shuts down), then the domain and files go.
   */
  async handle(c: StepContext): Promise<PhaseResult> {
    const inst = c.inst;
    if (!inst.metadata.finalizers?.includes(NODE_CLEANUP_FINALIZER)) return { kind: 'complete' };
    const uid = inst.metadata.uid;
    const conn = await c.d.session.conn();
    const dom = await lv(c.d.metrics, 'lookupByUUID', () => lookupDomain(conn, uid));
    const state = dom ? (await lv(c.d.metrics, 'getState', () => dom.getState())).state : undefined;
    const present = await c.report({
      ...(state !== undefined ? { powerState: powerStateOf(state) } : {}),
      // An action in flight ends with the Instance (the operator fails it): no task is left.
      task: null,
      action: null,
      conditions: [
        {
          type: ConditionType.Ready,
          status: 'False',
          reason: 'Deleting',
          message: 'the Instance is being deleted; removing its domain and disks',
        },
      ],
    });
    if (!present) return { kind: 'complete' };
    if (dom && state !== DomainState.SHUTOFF) {
      const asked = this.shutdownRequested.get(uid);
      const canShutDown = state === DomainState.RUNNING || state === DomainState.BLOCKED;
      if (canShutDown && asked === undefined) {
        await tolerateInvalid(lv(c.d.metrics, 'shutdown', () => dom.shutdown()));
        this.shutdownRequested.set(uid, Date.now());
        return { kind: 'complete', requeueAfterMs: POLL_MS };
      }
      if (canShutDown && Date.now() - (asked as number) < c.d.config.shutdownTimeoutMs)
        return { kind: 'complete', requeueAfterMs: POLL_MS };
    }
    await removeDomain(c.d, uid, (d) => lv(c.d.metrics, 'destroy', () => d.destroy()));
    this.shutdownRequested.delete(uid);
    const finalizers = inst.metadata.finalizers.filter((f) => f !== NODE_CLEANUP_FINALIZER);
    try {
      await c.d.patcher.setFinalizers(
        instanceRef(inst),
        inst.metadata.resourceVersion as string,
        finalizers,
      );
    } catch (err) {
      if (apiStatus(err) !== 404) throw err;
    }
    c.d.logger.info('instance removed from node', { instance: keyOf(inst) });
    return { kind: 'complete' };
  }
}

/**
 * A failed Instance still bound here: its addresses are released and nothing runs, so the
 * agent's NetworkReady, Ready, powerState and launchedAt must not say otherwise.
 */
export async function failed(c: StepContext): Promise<PhaseResult> {
  const conn = await c.d.session.conn();
  const dom = await lv(c.d.metrics, 'lookupByUUID', () => lookupDomain(conn, c.inst.metadata.uid));
  const state = dom ? (await lv(c.d.metrics, 'getState', () => dom.getState())).state : undefined;
  const why = c.inst.status?.fault?.message ?? 'the Instance failed';
  return {
    kind: 'update',
    status: {
      ...(state !== undefined
        ? { powerState: powerStateOf(state) }
        : { powerState: null, launchedAt: null, domainUUID: null }),
      conditions: [
        {
          type: ConditionType.NetworkReady,
          status: 'False',
          reason: 'InstanceFailed',
          message: `${why}; its addresses are released`,
        },
        { type: ConditionType.Ready, status: 'False', reason: 'InstanceFailed', message: why },
      ],
    },
  };
}
