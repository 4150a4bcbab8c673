// Removing an Instance's domain and files from the node, and reading libvirt's power state: shared
// by the reconciler (delete, undo of a failed build) and the garbage collector (orphans).
import type { PowerState } from '@kova/crds';
import type { LibvirtSession } from './host/libvirt-session.js';
import type { StatePaths } from './host/paths.js';
import { DomainState, isNoDomain, type Connection, type Domain } from './libvirt/index.js';
import { tolerateInvalid } from './libvirt-call.js';
import { removeInstanceFiles } from './steps/disks.js';

/** The Instance's domain, or undefined when libvirt has none with that UUID. */
export async function lookupDomain(conn: Connection, uid: string): Promise<Domain | undefined> {
  return conn.lookupByUUID(uid).catch((err) => {
    if (isNoDomain(err)) return undefined;
    throw err;
  });
}

/** Stops (via `stop`) and undefines the Instance's domain, if present; keeps its files. */
export async function undefineDomain(
  conn: Connection,
  uid: string,
  stop: (dom: Domain) => Promise<void>,
): Promise<void> {
  const dom = await lookupDomain(conn, uid);
  if (!dom) return;
  const { state } = await dom.getState();
  if (state !== DomainState.SHUTOFF) await tolerateInvalid(stop(dom));
  await dom.undefine().catch((err) => {
    if (!isNoDomain(err)) throw err;
  });
}

/** Stops (via `stop`), undefines and deletes the files of the Instance's domain, if present. */
export async function removeDomain(
  d: { session: Pick<LibvirtSession, 'conn'>; paths: StatePaths },
  uid: string,
  stop: (dom: Domain) => Promise<void>,
): Promise<void> {
  await undefineDomain(await d.session.conn(), uid, stop);
  await removeInstanceFiles(d.paths, uid);
}

export function powerStateOf(state: number): PowerState {
  switch (state) {
    case DomainState.RUNNING:
    case DomainState.BLOCKED:
      return 'Running';
    case DomainState.PAUSED:
      return 'Paused';
    case DomainState.SHUTDOWN:
    case DomainState.SHUTOFF:
      return 'Shutdown';
    case DomainState.CRASHED:
      return 'Crashed';
    case DomainState.PMSUSPENDED:
      return 'Suspended';
    default:
      return 'NoState';
  }
}
