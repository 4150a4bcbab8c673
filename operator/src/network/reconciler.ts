// The operator's sync of one Network, read top to bottom: a Network being deleted waits until no
// address is left on it, then loses its finalizer; any other gets the finalizer, its usage
// (allocated, available, holders, nodes with their tunnel endpoints), then its verdict — refused
// for clashing with an older Network, or given its VNI once and Ready. The status is saved once,
// only when something changed, as a merge patch carrying the resourceVersion the sync read; the
// Events follow the save.
import { apiStatus, type EventRecorder, type Logger, type Patcher } from '@kova/controller-kit';
import type { SyncResult } from '@kova/controller-kit';
import {
  API_VERSION,
  ConditionType,
  NETWORK_FINALIZER,
  NetworkReason,
  PLURAL,
  type INetwork,
} from '@kova/crds';
import type { OperatorConfig } from '../config.js';
import type { PendingEvent } from '../instance/sync-context.js';
import { StatusDraft } from '../instance/status-draft.js';
import type { NetworkMetrics } from './metrics.js';
import {
  addressCounts,
  holdersOf,
  lowestFreeVni,
  refusalOf,
  type Holders,
  type Refusal,
} from './rules.js';
import type { AddressLease } from '../ipam/blocks.js';
import type { NetworkUsage } from './usage.js';

export type NetworkStatus = NonNullable<INetwork['status']>;

/** Reads straight from the API server, for the decisions a lagging watch must not make. */
export interface NetworkApi {
  listNetworks(): Promise<INetwork[]>;
  /** Every address held on the Network, from its IPBlocks. */
  listLeases(network: string): Promise<AddressLease[]>;
}

export interface NetworkDeps {
  networks: { get(name: string): INetwork | undefined; list(): readonly INetwork[] };
  usage: Pick<NetworkUsage, 'allocationsOf' | 'nodesOf'>;
  /** Address creations in flight on a Network (this process's allocator). */
  allocator: { creating(network: string): number };
  api: NetworkApi;
  patcher: Patcher;
  events: EventRecorder;
  config: Pick<OperatorConfig, 'vniMin' | 'vniMax'>;
  metrics: NetworkMetrics;
  logger: Logger;
}

interface NetworkSync {
  net: INetwork & { metadata: { name: string; resourceVersion: string } };
  status: StatusDraft<NetworkStatus>;
  events: PendingEvent[];
}

/** Our own write is not in the view yet: look again this soon. */
const STALE_VIEW_RETRY_MS = 200;
/** A Network waiting for its holders is looked at again this often, besides every change. */
const HELD_RETRY_MS = 30_000;

const STALE = Symbol('stale');

export class NetworkReconciler {
  /** Per Network, the resourceVersions our writes were decided on: a view still there is behind. */
  private readonly writtenFrom = new Map<string, Set<string>>();

  constructor(private readonly d: NetworkDeps) {}

  async sync(name: string): Promise<SyncResult | void> {
    const cached = this.d.networks.get(name) as NetworkSync['net'] | undefined;
    if (!cached) return void this.writtenFrom.delete(name);
    if (this.behindOwnWrite(cached)) return { requeueAfterMs: STALE_VIEW_RETRY_MS };
    try {
      if (cached.metadata.deletionTimestamp) return await this.finalize(cached);
      const net = await this.ensureFinalizer(cached);
      const ctx: NetworkSync = { net, status: new StatusDraft(net), events: [] };
      this.observeUsage(ctx);
      const verdict = await this.judge(ctx);
      if (verdict === STALE) return { requeueAfterMs: STALE_VIEW_RETRY_MS };
      await this.save(ctx);
      this.record(ctx);
    } catch (err) {
      // Deleted while we worked on a cached copy: its delete event ends its story.
      if (apiStatus(err) !== 404) throw err;
      this.d.logger.info('Network not found while syncing; it is likely gone', { network: name });
    }
  }

  /** Refused for an older Network's sake, or given its VNI (once) and Ready. */
  private async judge(ctx: NetworkSync): Promise<void | typeof STALE> {
    const { net, status } = ctx;
    const refusal = refusalOf(net, this.d.networks.list());
    if (refusal) return this.notReady(ctx, refusal);
    const managed = net.spec.managed !== false;
    if (managed && net.status?.vni === undefined) {
      const vni = await this.pickVni(net);
      if (vni === STALE) return STALE;
      if (vni === undefined) {
        const { vniMin, vniMax } = this.d.config;
        return this.notReady(ctx, {
          reason: NetworkReason.VNIExhausted,
          message:
            `every VNI from ${vniMin} to ${vniMax} is recorded on another Network; delete ` +
            `Networks no longer used or widen the range (KOVA_VNI_MIN, KOVA_VNI_MAX)`,
        });
      }
      status.set('vni', vni);
      this.d.metrics.vnisAssigned.inc();
      ctx.events.push({ type: 'Normal', reason: 'VNIAssigned', message: `VXLAN VNI ${vni}` });
      this.d.logger.info('VNI assigned', { network: net.metadata.name, vni });
    }
    const message = managed
      ? `VNI ${status.get('vni')}: addresses are handed out and the overlay spans its nodes`
      : `unmanaged: addresses are handed out; bridge ${net.spec.bridge} must exist on each node`;
    if (status.condition(ConditionType.Ready)?.status !== 'True')
      ctx.events.push({ type: 'Normal', reason: NetworkReason.Ready, message });
    status.setCondition({
      type: ConditionType.Ready,
      status: 'True',
      reason: NetworkReason.Ready,
      message,
    });
  }

  /**
   * The lowest VNI no other Network has, judged on a fresh list from the API server: a watch
   * that lags behind an assignment (ours, or a previous leader's) must not hand it out twice.
   */
  private async pickVni(net: NetworkSync['net']): Promise<number | undefined | typeof STALE> {
    const fresh = await this.d.api.listNetworks();
    const self = fresh.find((n) => n.metadata?.uid === net.metadata.uid);
    // Gone, given a VNI meanwhile, or now refused: the view is behind; its event brings the rest.
    if (!self || self.status?.vni !== undefined || refusalOf(self, fresh)) return STALE;
    const used = new Set(
      fresh.flatMap((n) => (n === self || n.status?.vni === undefined ? [] : [n.status.vni])),
    );
    return lowestFreeVni(used, this.d.config.vniMin, this.d.config.vniMax);
  }

  /**
   * A Network being deleted goes once no address is left on it; until then it says who holds
   * it. The watch may lag behind an address just created, so none-left is confirmed with the
   * API server (and with this operator's own creations in flight) before the finalizer goes.
   */
  private async finalize(net: NetworkSync['net']): Promise<SyncResult | void> {
    const name = net.metadata.name;
    if (!(net.metadata.finalizers ?? []).includes(NETWORK_FINALIZER)) return;
    const ctx: NetworkSync = { net, status: new StatusDraft(net), events: [] };
    let holders = this.observeUsage(ctx);
    let retry = HELD_RETRY_MS;
    if (holders.count === 0 && this.d.allocator.creating(name) === 0) {
      const fresh = await this.d.api.listLeases(name);
      if (fresh.length === 0) return this.release(net);
      holders = holdersOf(fresh);
      retry = STALE_VIEW_RETRY_MS * 5;
    }
    if (holders.count > 0) {
      this.notReady(ctx, {
        reason: NetworkReason.InUse,
        message: `being deleted; ${holders.message}: it goes once they have released their addresses`,
      });
    }
    await this.save(ctx);
    this.record(ctx);
    return { requeueAfterMs: holders.count > 0 ? retry : STALE_VIEW_RETRY_MS };
  }

  private async release(net: NetworkSync['net']): Promise<void> {
    const rest = (net.metadata.finalizers ?? []).filter((f) => f !== NETWORK_FINALIZER);
    await this.d.patcher.setFinalizers(ref(net), net.metadata.resourceVersion, rest);
    this.d.logger.info('Network released: no address left on it', {
      network: net.metadata.name,
      vni: net.status?.vni,
    });
  }

  private async ensureFinalizer(net: NetworkSync['net']): Promise<NetworkSync['net']> {
    const has = net.metadata.finalizers ?? [];
    if (has.includes(NETWORK_FINALIZER)) return net;
    const rv = net.metadata.resourceVersion;
    const updated = await this.d.patcher.setFinalizers(ref(net), rv, [...has, NETWORK_FINALIZER]);
    this.wroteFrom(net);
    return updated as NetworkSync['net'];
  }

  /** allocated, available, holders and nodes, as the usage index has them now. */
  private observeUsage({ net, status }: NetworkSync): Holders {
    const allocations = this.d.usage.allocationsOf(net.metadata.name);
    const { allocated, available } = addressCounts(net, allocations);
    const holders = holdersOf(allocations);
    const nodes = this.d.usage.nodesOf(net.metadata.name);
    status.set('allocated', allocated).set('available', available);
    status.set('holders', holders.count).set('nodes', nodes.length ? nodes : null);
    return holders;
  }

  /** Ready=False with the reason; a Warning Event when the reason or the message is news. */
  private notReady({ net, status, events }: NetworkSync, why: Refusal): void {
    const prior = status.condition(ConditionType.Ready);
    if (prior?.reason !== why.reason || prior.message !== why.message) {
      events.push({ type: 'Warning', ...why });
      this.d.logger.info('Network not ready', { network: net.metadata.name, ...why });
    }
    status.setCondition({ type: ConditionType.Ready, status: 'False', ...why });
  }

  private async save({ net, status }: NetworkSync): Promise<void> {
    const behind = net.status?.observedGeneration !== net.metadata.generation;
    if (!status.dirty && !behind) return;
    await this.d.patcher.mergeStatus(ref(net), net.metadata.resourceVersion, status.patch(true));
    this.wroteFrom(net);
    this.d.metrics.statusWrites.inc();
  }

  private record({ net, events }: NetworkSync): void {
    for (const e of events) this.d.events.record(net, e.type, e.reason, e.message);
  }

  private wroteFrom(net: NetworkSync['net']): void {
    const name = net.metadata.name;
    const seen = this.writtenFrom.get(name) ?? new Set<string>();
    this.writtenFrom.set(name, seen.add(net.metadata.resourceVersion));
  }

  /** Whether the view still shows a version one of our writes was decided on. */
  private behindOwnWrite(net: NetworkSync['net']): boolean {
    const name = net.metadata.name;
    if (this.writtenFrom.get(name)?.has(net.metadata.resourceVersion)) return true;
    this.writtenFrom.delete(name);
    return false;
  }
}

function ref(net: NetworkSync['net']) {
  return {
    apiVersion: API_VERSION,
    kind: 'Network',
    plural: PLURAL.Network,
    name: net.metadata.name,
  };
}
