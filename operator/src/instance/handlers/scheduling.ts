// Scheduling: wait until everything the Instance names exists, pick a hypervisor with Nova's
// filters and weighers, claim its capacity, allocate the addresses and bind
// (status.nodeName, with the record of the Flavor and Image it is given), which moves the
// Instance to Networking.
import { apiStatus } from '@kova/controller-kit';
import { ConditionType, type Fault, type IFlavor, type IImage, type INetwork } from '@kova/crds';
import { groupKey, type ClusterState } from '../../cluster-state.js';
import { selectHost } from '../../scheduler/scheduler.js';
import type { GroupPolicy, RequestSpec } from '../../scheduler/types.js';
import { recordBinding } from './bound-record.js';
import { networkWait } from '../../ipam/allocator.js';
import { allocateAll, networkCondition } from './networking.js';
import { markFailed } from './failed.js';
import {
  done,
  RETRY_WAITING_MS,
  staleView,
  waitFor,
  type Result,
  type SyncContext,
} from '../sync-context.js';

export interface Waiting {
  reason: string;
  message: string;
}

/** Our own bind is not in the informer's view yet; look again this soon. */
const STALE_VIEW_RETRY_MS = 200;
/** After this long without the view showing our bind, ask the API server what happened. */
const CONFIRM_BIND_AFTER_MS = 5_000;

export async function schedule(ctx: SyncContext): Promise<Result> {
  const { inst, d } = ctx;
  const claim = d.state.claims.get(inst.metadata.uid);
  if (claim?.pendingSince !== undefined) return awaitOwnBind(ctx, claim.pendingSince);
  const waiting = prerequisites(d.state, ctx);
  if (waiting) return waitScheduling(ctx, waiting);
  const flavor = d.state.flavors.get(inst.spec.flavor) as IFlavor;
  const image = d.state.images.get(inst.spec.image) as IImage;
  const tooSmall = flavorTooSmall(flavor, image);
  if (tooSmall) return markFailed(ctx, tooSmall);
  return decide(ctx, requestSpec(d.state, ctx), { flavor, image });
}

/** The Flavor and Image as the decision saw them: the bind records them. */
interface Given {
  flavor: IFlavor;
  image: IImage;
}

async function decide(ctx: SyncContext, req: RequestSpec, given: Given): Promise<Result> {
  const { d } = ctx;
  const started = performance.now();
  const decision = selectHost(d.state.hostStates(), req, {
    multipliers: d.config.multipliers,
    hostSubsetSize: d.config.hostSubsetSize,
  });
  const result = decision.host ? 'bound' : 'no_valid_host';
  d.metrics.schedulingSeconds.observe({ result }, (performance.now() - started) / 1000);
  if (!decision.host) {
    d.metrics.schedulingFailures.inc({ reason: 'NoValidHost' });
    if (await releaseLostBind(ctx)) return staleView(STALE_VIEW_RETRY_MS);
    return waitScheduling(ctx, { reason: 'NoValidHost', message: decision.message });
  }
  return bind(ctx, decision.host.name, req, given);
}

async function bind(
  ctx: SyncContext,
  node: string,
  req: RequestSpec,
  given: Given,
): Promise<Result> {
  const { inst, d, status } = ctx;
  const uid = inst.metadata.uid;
  d.state.claims.set(uid, { node, resources: req.resources, group: req.group?.key }, Date.now());
  ctx.onSaveFailed = (err) => settleFailedBind(ctx, node, err);
  let allocated;
  try {
    allocated = await allocateAll(ctx);
  } catch (err) {
    d.state.claims.release(uid);
    throw err;
  }
  status.set('phase', 'Networking').set('nodeName', node).set('interfaces', allocated.interfaces);
  recordBinding(status, given.flavor, given.image);
  status.setCondition({
    type: ConditionType.Scheduled,
    status: 'True',
    reason: 'Bound',
    message: `bound to hypervisor ${node}`,
  });
  status.setCondition(networkCondition(allocated.waiting));
  ctx.events.push({ type: 'Normal', reason: 'Scheduled', message: `Bound to hypervisor ${node}` });
  if (!allocated.waiting) return done;
  ctx.events.push({ type: 'Warning', ...allocated.waiting });
  return waitFor(RETRY_WAITING_MS);
}

/**
 * The bind's status write failed. Refused (409): nothing was written, the claim goes. Anything
 * else may have reached the server: ask it, and keep the claim if the bind is there, so the
 * capacity is never handed out twice.
 */
async function settleFailedBind(ctx: SyncContext, node: string, err: unknown): Promise<void> {
  const uid = ctx.inst.metadata.uid;
  if (apiStatus(err) === 409) {
    ctx.d.state.claims.release(uid);
    return;
  }
  const bound = await ctx.d.state.boundNode(ctx.inst).catch(() => undefined);
  if (bound === node) ctx.d.state.claims.confirm(uid);
  else if (bound === null) ctx.d.state.claims.release(uid);
}

/** Our bind is written but the view does not show it yet: wait, then ask the server. */
async function awaitOwnBind(ctx: SyncContext, since: number): Promise<Result> {
  if (Date.now() - since < CONFIRM_BIND_AFTER_MS) return staleView(STALE_VIEW_RETRY_MS);
  const { inst, d } = ctx;
  const bound = await d.state.boundNode(inst);
  if (bound) d.state.claims.confirm(inst.metadata.uid);
  else d.state.claims.release(inst.metadata.uid);
  return staleView(STALE_VIEW_RETRY_MS);
}

/**
 * Addresses taken by a bind whose status never got written (a crash between the two) go back.
 * Only once the API server confirms the Instance is unbound: a view behind another replica's
 * bind must not free addresses in use. True when the view was stale.
 */
async function releaseLostBind({ inst, d }: SyncContext): Promise<boolean> {
  if (!d.allocator.allocationsOf(inst.metadata.uid).length) return false;
  if ((await d.state.boundNode(inst)) !== null) return true;
  await d.allocator.release(inst.metadata.uid);
  return false;
}

/** Records why the Instance waits. */
export function waitScheduling(ctx: SyncContext, w: Waiting): Result {
  // An Event when the reason changes; a count in the message moving is not news.
  if (ctx.status.condition(ConditionType.Scheduled)?.reason !== w.reason) {
    ctx.events.push({ type: 'Warning', ...w });
  }
  ctx.status.set('phase', 'Scheduling');
  ctx.status.setCondition({ type: ConditionType.Scheduled, status: 'False', ...w });
  return waitFor(RETRY_WAITING_MS);
}

function prerequisites(s: ClusterState, { inst }: SyncContext): Waiting | undefined {
  if (!s.flavors.get(inst.spec.flavor))
    return notFound('Flavor', inst.spec.flavor, 'create it or fix spec.flavor');
  if (!s.images.get(inst.spec.image))
    return notFound('Image', inst.spec.image, 'create it or fix spec.image');
  const missing = inst.spec.networks.find((n) => !s.networks.get(n.network));
  if (missing) return notFound('Network', missing.network, 'create it or fix spec.networks');
  // No capacity is claimed for an Instance whose Network hands out no address yet.
  for (const { network } of inst.spec.networks) {
    const wait = networkWait(network, s.networks.get(network) as INetwork);
    if (wait) return wait;
  }
  const group = inst.spec.serverGroup;
  if (group && !s.serverGroups.get(group, inst.metadata.namespace))
    return notFound(
      'ServerGroup',
      group,
      `create it in namespace ${inst.metadata.namespace} or fix spec.serverGroup`,
    );
  return undefined;
}

const notFound = (kind: string, name: string, fix: string): Waiting => ({
  reason: `${kind}NotFound`,
  message: `${kind} ${name} does not exist; ${fix}`,
});

function requestSpec(s: ClusterState, { inst }: SyncContext): RequestSpec {
  const flavor = s.flavors.get(inst.spec.flavor) as IFlavor;
  const image = s.images.get(inst.spec.image);
  const group = inst.spec.serverGroup;
  const sg = group ? s.serverGroups.get(group, inst.metadata.namespace) : undefined;
  return {
    resources: s.flavorResources(flavor),
    arch: image?.spec.architecture ?? 'x86_64',
    zone: inst.spec.availabilityZone,
    nodeSelector: inst.spec.nodeSelector,
    triedNodes: new Set((inst.status?.attempts ?? []).map((a) => a.node)),
    group: sg
      ? {
          key: groupKey(inst) as string,
          policy: sg.spec.policy as GroupPolicy,
          maxPerNode: sg.spec.maxPerNode ?? 1,
        }
      : undefined,
  };
}

function flavorTooSmall(flavor: IFlavor, image: IImage): Fault | undefined {
  const f = flavor.spec;
  const i = image.spec;
  const names = `Image ${image.metadata?.name} / Flavor ${flavor.metadata?.name}`;
  if ((i.minDiskGiB ?? 0) > f.rootDiskGiB) {
    return {
      reason: 'FlavorDiskTooSmall',
      message: `${names}: the image needs a root disk of ${i.minDiskGiB} GiB, the flavor has ${f.rootDiskGiB} GiB. Use a larger Flavor.`,
    };
  }
  if ((i.minMemoryMiB ?? 0) > f.memoryMiB) {
    return {
      reason: 'FlavorMemoryTooSmall',
      message: `${names}: the image needs ${i.minMemoryMiB} MiB of memory, the flavor has ${f.memoryMiB} MiB. Use a larger Flavor.`,
    };
  }
  return undefined;
}
