// What an Instance was given when it was bound (Nova's instance.flavor): the Flavor's sizes and
// the Image's checksum and format, recorded in status.flavor and status.image by the operator's
// bind. Accounting, builds and reports read the record, so a Flavor deleted or recreated under
// the same name, or an Image whose content changed, changes nothing for a bound Instance.
import type { InstanceStatus } from './contract.js';
import type { IFlavor, IImage } from './generated/compute.kova.dev/v1alpha1/index.js';

export type FlavorRecord = NonNullable<InstanceStatus['flavor']>;
export type ImageRecord = NonNullable<InstanceStatus['image']>;

export function flavorRecord(flavor: IFlavor): FlavorRecord {
  const s = flavor.spec;
  return {
    name: flavor.metadata?.name ?? '',
    vcpus: s.vcpus,
    memoryMiB: s.memoryMiB,
    rootDiskGiB: s.rootDiskGiB,
    ephemeralGiB: s.ephemeralGiB ?? 0,
    swapMiB: s.swapMiB ?? 0,
    ...(s.extraSpecs ? { extraSpecs: s.extraSpecs } : {}),
  };
}

export function imageRecord(image: IImage): ImageRecord {
  return {
    name: image.metadata?.name ?? '',
    sha256: image.spec.sha256,
    format: image.spec.format ?? 'qcow2',
  };
}

/**
 * The sizes an Instance was given: its record; for an Instance bound before records existed
 * (the operator fills the record on its next sync), its Flavor as it is now. Undefined when
 * there is neither.
 */
export function flavorOf(
  inst: { spec: { flavor: string }; status?: InstanceStatus },
  flavors: { get(name: string): IFlavor | undefined },
): FlavorRecord | undefined {
  if (inst.status?.flavor) return inst.status.flavor;
  const current = flavors.get(inst.spec.flavor);
  return current && flavorRecord(current);
}
