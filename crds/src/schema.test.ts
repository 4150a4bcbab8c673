// The CRD YAML is the source of truth: the committed models must match it, and the schema
// itself must document every field (kubectl explain reads these descriptions).
import { describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crdManifests, Flavor, Instance } from './index.js';

const generator = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  'scripts',
  'generate-models.mjs',
);

type Schema = {
  description?: string;
  properties?: Record<string, Schema>;
  items?: Schema;
  additionalProperties?: Schema | boolean;
};

function undocumented(schema: Schema, path: string): string[] {
  const missing: string[] = [];
  for (const [name, child] of Object.entries(schema.properties ?? {})) {
    const p = `${path}.${name}`;
    if (name !== 'metadata' && !child.description) missing.push(p);
    missing.push(...undocumented(child, p));
    if (child.items) missing.push(...undocumented(child.items, `${p}[]`));
  }
  return missing;
}

describe('CRD schemas', () => {
  it('generated models match crds/*.yaml', () => {
    expect(() =>
      execFileSync(process.execPath, [generator, '--check'], { stdio: 'pipe' }),
    ).not.toThrow();
  });

  it('describe every field', async () => {
    const missing: string[] = [];
    for (const crd of await crdManifests()) {
      const spec = crd.spec as {
        names: { kind: string };
        versions: { schema: { openAPIV3Schema: Schema } }[];
      };
      for (const v of spec.versions)
        missing.push(...undocumented(v.schema.openAPIV3Schema, spec.names.kind));
    }
    expect(missing).toEqual([]);
  });

  it('give typed models that validate against the schema', () => {
    const flavor = new Flavor({
      metadata: { name: 'm1.tiny' },
      spec: { vcpus: 1, memoryMiB: 512, rootDiskGiB: 1 },
    });
    expect(() => flavor.validate()).not.toThrow();
    const bad = new Instance({
      metadata: { name: 'x' },
      spec: { flavor: 'f', image: 'i', networks: [] },
    });
    expect(() => bad.validate()).toThrow(/networks/);
  });
});
