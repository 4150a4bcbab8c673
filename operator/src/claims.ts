// In-memory capacity claims, the scheduler's view of what each hypervisor already holds.
// A claim is taken at bind time, before the API server or the informer has seen the binding,
// so two decisions in a row can never both count on the same free capacity.
import { noResources, type Resources } from './scheduler/types.js';

export interface Claim {
  node: string;
  resources: Resources;
  /** namespace/name of the Instance's server group, if any. */
  group?: string;
  /** Set while our own bind is not confirmed by the informer's view (epoch ms of the bind). */
  pendingSince?: number;
}

export class Claims {
  private readonly byInstance = new Map<string, Claim>();
  private readonly usedByNode = new Map<string, Resources>();
  private readonly groupsByNode = new Map<string, Map<string, number>>();

  get(uid: string): Claim | undefined {
    return this.byInstance.get(uid);
  }

  /**
   * Claims capacity for the Instance on claim.node, moving an older claim of it if any. With
   * `pendingSince`, the claim is our own bind that the informer has not shown yet.
   */
  set(uid: string, claim: Omit<Claim, 'pendingSince'>, pendingSince?: number): void {
    const old = this.byInstance.get(uid);
    if (old?.node === claim.node) {
      old.pendingSince = pendingSince;
      return;
    }
    if (old) this.release(uid);
    const added = { ...claim, pendingSince };
    this.byInstance.set(uid, added);
    this.adjust(added, 1);
  }

  /** The view now shows the bind the claim stands for. */
  confirm(uid: string): void {
    const claim = this.byInstance.get(uid);
    if (claim) claim.pendingSince = undefined;
  }

  release(uid: string): Claim | undefined {
    const claim = this.byInstance.get(uid);
    if (!claim) return undefined;
    this.byInstance.delete(uid);
    this.adjust(claim, -1);
    return claim;
  }

  clear(): void {
    this.byInstance.clear();
    this.usedByNode.clear();
    this.groupsByNode.clear();
  }

  /** Live totals for the node: the object changes as claims come and go. */
  used(node: string): Resources {
    let used = this.usedByNode.get(node);
    if (!used) {
      used = noResources();
      this.usedByNode.set(node, used);
    }
    return used;
  }

  groupMembers(node: string): Map<string, number> {
    let groups = this.groupsByNode.get(node);
    if (!groups) {
      groups = new Map();
      this.groupsByNode.set(node, groups);
    }
    return groups;
  }

  private adjust(claim: Claim, sign: 1 | -1): void {
    const used = this.used(claim.node);
    used.vcpus += sign * claim.resources.vcpus;
    used.memoryMiB += sign * claim.resources.memoryMiB;
    used.diskGiB += sign * claim.resources.diskGiB;
    if (claim.group) {
      const groups = this.groupMembers(claim.node);
      const n = (groups.get(claim.group) ?? 0) + sign;
      if (n > 0) groups.set(claim.group, n);
      else groups.delete(claim.group);
    }
  }
}
