// The record of what an Instance was given (status.flavor, status.image; Nova's
// instance.flavor): written by the bind in the same status write as nodeName, cleared with the
// binding, and filled once for an Instance bound before records existed, from its Flavor and
// Image if they still exist. Accounting, builds and reports read the record from then on.
import { flavorRecord, imageRecord, type IFlavor, type IImage } from '@kova/crds';
import type { StatusDraft } from '../status-draft.js';
import type { SyncContext } from '../sync-context.js';

/** The status fields of the record; they go with the binding (nodeName). */
export const RECORD_FIELDS = ['flavor', 'image'] as const;

export function recordBinding(status: StatusDraft, flavor: IFlavor, image: IImage): void {
  status.set('flavor', flavorRecord(flavor)).set('image', imageRecord(image));
}

/** A bound Instance without a record (bound by an older operator) gets one from the objects now. */
export function fillMissingRecord({ inst, d, status }: SyncContext): void {
  if (!inst.status?.nodeName) return;
  const flavor = d.state.flavors.get(inst.spec.flavor);
  const image = d.state.images.get(inst.spec.image);
  if (!inst.status.flavor && flavor) status.set('flavor', flavorRecord(flavor));
  if (!inst.status.image && image) status.set('image', imageRecord(image));
}
