// Asking for an InstanceAction, as every verb but `actions` does.
import type { ActionSpec, InstanceActionObject } from '@kova/crds';
import type { Cluster } from './client.js';

/**
 * Creates the action `<instance>-<verb>-xxxxx`, requested by the caller as the API server sees
 * them. The Instance is read first, so that a wrong name fails with kubectl's NotFound instead of
 * leaving an action behind that the operator would only refuse.
 */
export async function requestAction(
  cluster: Cluster,
  verb: string,
  spec: Omit<ActionSpec, 'requestedBy'>,
): Promise<InstanceActionObject> {
  const [, requestedBy] = await Promise.all([cluster.getInstance(spec.instance), cluster.whoami()]);
  return cluster.createAction({ ...spec, requestedBy }, `${spec.instance}-${verb}-`);
}
