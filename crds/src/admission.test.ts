// Bad input is rejected by the real API server (OpenAPI schema and CEL rules of crds/*.yaml),
// with a message that names the field; the manifests in examples/ are accepted.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import {
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
} from '@kubernetes/client-node';
import { apiMessage, apiStatus, loadKubeConfig } from '@kova/controller-kit';
import { applyFile } from '@kova/hack';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GROUP, PLURAL, VERSION, type KovaKind } from './index.js';

type Obj = {
  apiVersion: string;
  kind: KovaKind;
  metadata: { name: string; namespace?: string };
  spec: Record<string, unknown>;
};

const examplesDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'examples');
const run = Math.random().toString(36).slice(2, 7);
const ns = `admission-${run}`;
const namespaced = new Set<KovaKind>(['Instance', 'ServerGroup']);

let kc: KubeConfig;
let api: CustomObjectsApi;

const obj = (
  kind: KovaKind,
  spec: Record<string, unknown>,
  name = `${kind.toLowerCase()}-${run}`,
): Obj => ({
  apiVersion: `${GROUP}/${VERSION}`,
  kind,
  metadata: namespaced.has(kind) ? { name, namespace: ns } : { name },
  spec,
});

const flavor = (spec: Record<string, unknown> = {}) =>
  obj('Flavor', { vcpus: 1, memoryMiB: 512, rootDiskGiB: 1, ...spec });
const image = (spec: Record<string, unknown> = {}) =>
  obj('Image', {
    source: 'https://images.example.com/guest.qcow2',
    sha256: 'a'.repeat(64),
    ...spec,
  });
const network = (spec: Record<string, unknown> = {}) =>
  obj('Network', { cidr: '10.20.0.0/24', gateway: '10.20.0.1', bridge: 'br-test', ...spec });
const serverGroup = (spec: Record<string, unknown> = {}) =>
  obj('ServerGroup', { policy: 'anti-affinity', ...spec });
const instance = (spec: Record<string, unknown> = {}, name?: string) =>
  obj(
    'Instance',
    { flavor: 'm1.tiny', image: 'guest', networks: [{ network: 'default' }], ...spec },
    name,
  );
const hypervisor = (spec: Record<string, unknown> = {}) => obj('Hypervisor', spec, `node-${run}`);

function group(o: Obj) {
  return { group: GROUP, version: VERSION, plural: PLURAL[o.kind] };
}

async function create(o: Obj): Promise<Obj> {
  const args = { ...group(o), body: o };
  return (
    o.metadata.namespace
      ? api.createNamespacedCustomObject({ ...args, namespace: o.metadata.namespace })
      : api.createClusterCustomObject(args)
  ) as Promise<Obj>;
}

async function replace(o: Obj): Promise<Obj> {
  const args = { ...group(o), name: o.metadata.name, body: o };
  return (
    o.metadata.namespace
      ? api.replaceNamespacedCustomObject({ ...args, namespace: o.metadata.namespace })
      : api.replaceClusterCustomObject(args)
  ) as Promise<Obj>;
}

async function remove(o: Obj): Promise<void> {
  const args = { ...group(o), name: o.metadata.name };
  await (
    o.metadata.namespace
      ? api.deleteNamespacedCustomObject({ ...args, namespace: o.metadata.namespace })
      : api.deleteClusterCustomObject(args)
  ).catch((err) => {
    if (apiStatus(err) !== 404) throw err;
  });
}

/** The API server's answer to a request expected to fail validation. */
async function rejection(request: Promise<unknown>): Promise<string> {
  const outcome = await request.then(
    () => undefined,
    (err) => ({ status: apiStatus(err), message: apiMessage(err) }),
  );
  if (!outcome) throw new Error('the API server accepted the manifest');
  expect(outcome.status).toBe(422);
  return outcome.message;
}

interface Case {
  name: string;
  manifest: () => Obj;
  /** For updates: the valid object created first; `manifest` is then applied over it. */
  before?: () => Obj;
  field: string;
  message: string | RegExp;
}

const withSpec = (o: Obj, spec: Record<string, unknown>): Obj => ({
  ...o,
  spec: { ...o.spec, ...spec },
});

const cases: Case[] = [
  {
    name: 'Flavor with 0 vcpus',
    manifest: () => flavor({ vcpus: 0 }),
    field: 'spec.vcpus',
    message: 'greater than or equal to 1',
  },
  {
    name: 'Flavor below the memory minimum',
    manifest: () => flavor({ memoryMiB: 32 }),
    field: 'spec.memoryMiB',
    message: 'greater than or equal to 64',
  },
  {
    name: 'Flavor without a root disk',
    manifest: () => obj('Flavor', { vcpus: 1, memoryMiB: 512 }),
    field: 'spec.rootDiskGiB',
    message: 'Required value',
  },
  {
    name: 'Flavor resized after creation',
    before: () => flavor(),
    manifest: () => flavor({ memoryMiB: 1024 }),
    field: 'spec',
    message: 'cannot be changed after creation',
  },
  {
    name: 'Image sha256 not 64 hex digits',
    manifest: () => image({ sha256: 'abc123' }),
    field: 'spec.sha256',
    message: 'should match',
  },
  {
    name: 'Image sha256 in upper case',
    manifest: () => image({ sha256: 'A'.repeat(64) }),
    field: 'spec.sha256',
    message: 'should match',
  },
  {
    name: 'Image URL with an unsupported scheme',
    manifest: () => image({ source: 'ftp://images.example.com/guest.qcow2' }),
    field: 'spec.source',
    message: 'http:// or https:// URL',
  },
  {
    name: 'Image URL without a host',
    manifest: () => image({ source: 'https:///guest.qcow2' }),
    field: 'spec.source',
    message: 'http:// or https:// URL',
  },
  {
    name: 'Image relative path',
    manifest: () => image({ source: 'images/guest.qcow2' }),
    field: 'spec.source',
    message: 'absolute',
  },
  {
    name: "Image path climbing out with '..'",
    manifest: () => image({ source: '/var/lib/kova/../../etc/shadow' }),
    field: 'spec.source',
    message: "must not contain '..'",
  },
  {
    name: 'Image in an unknown format',
    manifest: () => image({ format: 'vmdk' }),
    field: 'spec.format',
    message: 'Unsupported value: "vmdk"',
  },
  {
    name: 'Image initrd without a kernel',
    manifest: () => image({ initrd: { source: '/boot/initrd.img', sha256: 'b'.repeat(64) } }),
    field: 'spec.initrd',
    message: 'set kernel too',
  },
  {
    name: 'Network CIDR malformed',
    manifest: () => network({ cidr: '10.20.0.0/33' }),
    field: 'spec.cidr',
    message: 'IPv4 subnet in CIDR notation',
  },
  {
    name: 'Network CIDR with host bits',
    manifest: () => network({ cidr: '10.20.0.5/24' }),
    field: 'spec.cidr',
    message: 'host bits zero',
  },
  {
    name: 'Network IPv6 CIDR',
    manifest: () => network({ cidr: 'fd00::/64' }),
    field: 'spec.cidr',
    message: 'IPv4 subnet',
  },
  {
    name: 'Network gateway outside the CIDR',
    manifest: () => network({ gateway: '10.30.0.1' }),
    field: 'spec.gateway',
    message: 'inside cidr',
  },
  {
    name: 'Network gateway is the network address',
    manifest: () => network({ gateway: '10.20.0.0' }),
    field: 'spec.gateway',
    message: 'must not be the network address',
  },
  {
    name: 'Network pool outside the CIDR',
    manifest: () => network({ allocationPools: [{ start: '10.20.0.10', end: '10.20.1.20' }] }),
    field: 'spec.allocationPools',
    message: 'inside cidr',
  },
  {
    name: 'Network pools overlapping',
    manifest: () =>
      network({
        allocationPools: [
          { start: '10.20.0.10', end: '10.20.0.100' },
          { start: '10.20.0.50', end: '10.20.0.200' },
        ],
      }),
    field: 'spec.allocationPools',
    message: 'must not overlap',
  },
  {
    name: 'Network pool whose start is after its end',
    manifest: () => network({ allocationPools: [{ start: '10.20.0.100', end: '10.20.0.10' }] }),
    field: 'spec.allocationPools[0]',
    message: 'start must not come after its end',
  },
  {
    name: 'Network pool holding the gateway',
    manifest: () => network({ allocationPools: [{ start: '10.20.0.1', end: '10.20.0.50' }] }),
    field: 'spec.allocationPools',
    message: 'gateway must not lie inside',
  },
  {
    name: 'Network pool address malformed',
    manifest: () => network({ allocationPools: [{ start: '10.20.0.x', end: '10.20.0.50' }] }),
    field: 'spec.allocationPools[0].start',
    message: 'IPv4 address',
  },
  {
    name: 'Network bridge name longer than Linux allows',
    manifest: () => network({ bridge: 'a-very-long-bridge' }),
    field: 'spec.bridge',
    message: 'should match',
  },
  {
    name: 'Network MTU too small',
    manifest: () => network({ mtu: 100 }),
    field: 'spec.mtu',
    message: 'greater than or equal to 576',
  },
  {
    name: 'Network CIDR changed after creation',
    before: () => network(),
    manifest: () => network({ cidr: '10.21.0.0/24', gateway: '10.21.0.1' }),
    field: 'spec.cidr',
    message: 'cidr cannot be changed',
  },
  {
    name: 'Network bridge changed after creation',
    before: () => network(),
    manifest: () => network({ bridge: 'br-other' }),
    field: 'spec.bridge',
    message: 'bridge cannot be changed',
  },
  {
    name: 'Network MTU changed after creation',
    before: () => network(),
    manifest: () => network({ mtu: 1400 }),
    field: 'spec.mtu',
    message: 'mtu cannot be changed',
  },
  {
    name: 'ServerGroup with an unknown policy',
    manifest: () => serverGroup({ policy: 'spread' }),
    field: 'spec.policy',
    message: 'Unsupported value: "spread"',
  },
  {
    name: 'ServerGroup maxPerNode on an affinity group',
    manifest: () => serverGroup({ policy: 'affinity', maxPerNode: 2 }),
    field: 'spec.maxPerNode',
    message: 'only applies to the anti-affinity policy',
  },
  {
    name: 'ServerGroup policy changed after creation',
    before: () => serverGroup(),
    manifest: () => serverGroup({ policy: 'affinity' }),
    field: 'spec.policy',
    message: 'cannot be changed',
  },
  {
    name: 'Instance with an unknown runStrategy',
    manifest: () => instance({ runStrategy: 'Sometimes' }),
    field: 'spec.runStrategy',
    message: 'Unsupported value: "Sometimes"',
  },
  {
    name: 'Instance userData over 64 KiB',
    manifest: () => instance({ userData: 'x'.repeat(65537) }),
    field: 'spec.userData',
    message: /Too long|64 KiB/,
  },
  {
    name: 'Instance userData over 64 KiB once UTF-8 encoded',
    manifest: () => instance({ userData: 'é'.repeat(40000) }),
    field: 'spec.userData',
    message: 'once UTF-8 encoded',
  },
  {
    name: 'Instance fixed IP malformed',
    manifest: () => instance({ networks: [{ network: 'default', fixedIP: '10.0.0.300' }] }),
    field: 'spec.networks[0].fixedIP',
    message: 'must be an IPv4 address',
  },
  {
    name: 'Instance without networks',
    manifest: () => instance({ networks: [] }),
    field: 'spec.networks',
    message: /at least 1 item|should have at least 1/,
  },
  {
    name: 'Instance on one network twice',
    manifest: () => instance({ networks: [{ network: 'default' }, { network: 'default' }] }),
    field: 'spec.networks[1]',
    message: 'Duplicate value',
  },
  {
    name: 'Instance flavor name that is not a resource name',
    manifest: () => instance({ flavor: 'M1 Tiny' }),
    field: 'spec.flavor',
    message: 'should match',
  },
  {
    name: 'Instance SSH key that is not an OpenSSH public key',
    manifest: () => instance({ sshAuthorizedKeys: ['-----BEGIN RSA PRIVATE KEY-----'] }),
    field: 'spec.sshAuthorizedKeys[0]',
    message: 'OpenSSH authorized_keys form',
  },
  {
    name: 'Instance SSH key spanning two lines',
    manifest: () => instance({ sshAuthorizedKeys: ['ssh-ed25519 AAAA a\nssh-rsa AAAA b'] }),
    field: 'spec.sshAuthorizedKeys[0]',
    message: 'OpenSSH authorized_keys form',
  },
  {
    name: 'Instance name too long for a hostname',
    manifest: () => instance({}, `vm-${'a'.repeat(61)}`),
    field: '<root>',
    message: 'at most 63 characters',
  },
  {
    name: 'Instance flavor changed after creation',
    before: () => instance(),
    manifest: () => instance({ flavor: 'm1.small' }),
    field: 'spec.flavor',
    message: 'flavor cannot be changed',
  },
  {
    name: 'Instance image changed after creation',
    before: () => instance(),
    manifest: () => instance({ image: 'other' }),
    field: 'spec.image',
    message: 'image cannot be changed',
  },
  {
    name: 'Instance networks changed after creation',
    before: () => instance(),
    manifest: () => instance({ networks: [{ network: 'other' }] }),
    field: 'spec.networks',
    message: 'networks cannot be changed',
  },
  {
    name: 'Instance joining a server group after creation',
    before: () => instance(),
    manifest: () => instance({ serverGroup: 'web' }),
    field: 'spec.serverGroup',
    message: 'cannot be added or removed',
  },
  {
    name: 'Hypervisor CPU allocation ratio of 0',
    manifest: () => hypervisor({ cpuAllocationRatio: 0 }),
    field: 'spec.cpuAllocationRatio',
    message: 'must be greater than 0',
  },
  {
    name: 'Hypervisor disabledReason while enabled',
    manifest: () => hypervisor({ disabledReason: 'maintenance' }),
    field: 'spec.disabledReason',
    message: 'only meaningful when disabled',
  },
];

beforeAll(async () => {
  kc = loadKubeConfig();
  api = kc.makeApiClient(CustomObjectsApi);
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: ns } } });
});

afterAll(async () => {
  await kc.makeApiClient(CoreV1Api).deleteNamespace({ name: ns });
  for (const o of [flavor(), image(), network(), hypervisor()]) await remove(o);
});

describe('admission rejects bad input and names the field', () => {
  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const manifest = c.manifest();
    if (c.before) {
      const created = await create(c.before());
      manifest.metadata = { ...created.metadata };
    }
    try {
      const message = await rejection(c.before ? replace(manifest) : create(manifest));
      expect(message).toContain(c.field === '<root>' ? 'Invalid value' : `${c.field}:`);
      if (typeof c.message === 'string') expect(message).toContain(c.message);
      else expect(message).toMatch(c.message);
    } finally {
      if (c.before) await remove(c.before());
    }
  });

  it('covers at least 20 distinct invalid manifests', () => {
    expect(new Set(cases.map((c) => c.name)).size).toBeGreaterThanOrEqual(20);
  });
});

describe('valid manifests', () => {
  it('accepts every example in examples/', async () => {
    const files = readdirSync(examplesDir).filter((f) => f.endsWith('.yaml'));
    expect(files.length).toBeGreaterThan(0);
    for (const file of files) {
      const applied = await applyFile(join(examplesDir, file), { namespace: ns });
      expect(applied.length).toBeGreaterThan(0);
    }
  });

  it('fills in defaults', async () => {
    const i = await create(instance({}, `defaults-${run}`));
    expect(i.spec.runStrategy).toBe('Always');
    const f = await create(flavor());
    expect(f.spec).toMatchObject({ ephemeralGiB: 0, swapMiB: 0 });
    const n = await create(network());
    expect(n.spec).toMatchObject({ managed: true, mtu: 1450, egress: false });
    const img = await create(image());
    expect(img.spec).toMatchObject({ format: 'qcow2', architecture: 'x86_64', minDiskGiB: 0 });
  });

  it('allows what a running Instance may change: runStrategy and labels', async () => {
    const created = await create(instance({ runStrategy: 'Always' }, `mutable-${run}`));
    const updated = await replace(
      withSpec(
        {
          ...created,
          metadata: { ...created.metadata, labels: { tier: 'web' } } as Obj['metadata'],
        },
        { runStrategy: 'Halted' },
      ),
    );
    expect(updated.spec.runStrategy).toBe('Halted');
  });

  it('#12.12 refuses userData, SSH key and nodeSelector edits once bound, allows them before', async () => {
    const name = `bound-${run}`;
    let current = await create(instance({ userData: 'v1' }, name));
    current = await replace(withSpec(current, { userData: 'v2', nodeSelector: { a: 'b' } }));
    expect(current.spec.userData).toBe('v2');
    await api.patchNamespacedCustomObjectStatus(
      { ...group(current), namespace: ns, name, body: { status: { nodeName: 'node-1' } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    const bound = (await api.getNamespacedCustomObject({
      ...group(current),
      namespace: ns,
      name,
    })) as Obj;
    for (const change of [
      { userData: 'v3' },
      { sshAuthorizedKeys: ['ssh-ed25519 AAAAC3Nza me@host'] },
      { nodeSelector: { a: 'c' } },
    ]) {
      const message = await rejection(replace(withSpec(bound, change)));
      expect(message).toContain('cannot change once the Instance is bound');
    }
    expect((await replace(withSpec(bound, { runStrategy: 'Halted' }))).spec.runStrategy).toBe(
      'Halted',
    );
  });
});
