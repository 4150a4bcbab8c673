// Addresses recorded by earlier operators, one IPAllocation object per address: moved into their
// IPBlocks when a leadership term starts, before anything is allocated or a Network's deletion
// judged, so an upgrade never hands out an address a running guest has. Each is deleted once its
// block lists it; one whose block lists another holder is kept, and said so.
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { apiStatus, type Logger } from '@kova/controller-kit';
import { GROUP, VERSION } from '@kova/crds';
import type { AddressAllocator } from './allocator.js';
import type { InstanceRef } from './blocks.js';

const LEGACY = { group: GROUP, version: VERSION, plural: 'ipallocations' };
const HELD_FOR_NODE_LABEL = 'compute.kova.dev/held-for-node';

interface LegacyAllocation {
  metadata: { name: string; labels?: Record<string, string> };
  spec: { network: string; ip: string; mac: string; instance: InstanceRef };
}

/** Moves every legacy IPAllocation into its block; nothing to do where the kind never existed. */
export async function adoptLegacyAllocations(
  kc: KubeConfig,
  allocator: Pick<AddressAllocator, 'adopt'>,
  logger: Logger,
): Promise<void> {
  const custom = kc.makeApiClient(CustomObjectsApi);
  let items: LegacyAllocation[];
  try {
    items = ((await custom.listClusterCustomObject(LEGACY)) as { items: LegacyAllocation[] }).items;
  } catch (err) {
    if (apiStatus(err) === 404) return;
    throw err;
  }
  const moved = await Promise.all(items.map((a) => adoptOne(custom, allocator, logger, a)));
  const count = moved.filter(Boolean).length;
  if (count) logger.info('moved addresses from IPAllocations into IPBlocks', { count });
}

async function adoptOne(
  custom: CustomObjectsApi,
  allocator: Pick<AddressAllocator, 'adopt'>,
  logger: Logger,
  a: LegacyAllocation,
): Promise<boolean> {
  const heldForNode = a.metadata.labels?.[HELD_FOR_NODE_LABEL];
  const lease = { ...a.spec, ...(heldForNode ? { heldForNode } : {}) };
  const fields = { ipAllocation: a.metadata.name, instance: a.spec.instance };
  const outcome = await allocator.adopt(lease);
  // Kept as it is: nothing hands out an address of a Network that is gone.
  if (outcome === 'networkGone')
    logger.warn('an IPAllocation names a Network that does not exist; kept', fields);
  if (outcome === 'heldByAnother')
    logger.error('an IPAllocation names an address its IPBlock gives another holder; kept', fields);
  if (outcome !== 'adopted') return false;
  await custom.deleteClusterCustomObject({ ...LEGACY, name: a.metadata.name }).catch((err) => {
    if (apiStatus(err) !== 404) throw err;
  });
  return true;
}
