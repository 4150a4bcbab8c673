// The allocator's view of the IPBlocks as the watch delivers them: late events must not undo
// what the view has already seen (our own writes, a deletion), or a freed address would look
// held, or a held one free.
import { describe, expect, it } from '@jest/globals';
import { KubeConfig } from '@kubernetes/client-node';
import type { Informer, InformerEvent } from '@kova/controller-kit';
import type { IIPBlock, INetwork } from '@kova/crds';
import { AddressAllocator } from './allocator.js';

type Handler = (b: IIPBlock, type: InformerEvent) => void;

function allocatorWithWatch() {
  const handlers: Handler[] = [];
  const blocks = { on: (h: Handler) => handlers.push(h) } as unknown as Informer<IIPBlock>;
  const networks = { get: () => undefined } as unknown as Informer<INetwork>;
  // A cluster nobody calls: these cases only watch.
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: 'https://127.0.0.1:1' }],
    users: [{ name: 'u' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  const allocator = new AddressAllocator(kc, networks, blocks);
  const emit = (type: InformerEvent, rv: number, uids: string[]) => {
    const block: IIPBlock = {
      apiVersion: 'compute.kova.dev/v1alpha1',
      kind: 'IPBlock',
      metadata: { name: 'red.10-0-0-0', resourceVersion: String(rv) },
      spec: {
        network: 'red',
        cidr: '10.0.0.0/26',
        addresses: uids.map((uid, i) => ({
          ip: `10.0.0.${i + 2}`,
          mac: 'fa:16:3e:00:00:02',
          instance: { namespace: 'ns', name: uid, uid },
        })),
      },
    };
    for (const h of handlers) h(block, type);
  };
  const holders = () => allocator.leases().map((l) => l.instance.uid);
  return { emit, holders };
}

describe('the allocator’s view of the blocks', () => {
  it('ignores an event older than the version it has', () => {
    const w = allocatorWithWatch();
    w.emit('update', 12, ['a', 'b']);
    w.emit('update', 11, ['a']);
    expect(w.holders()).toEqual(['a', 'b']);
  });

  it('does not let a late event from before a deletion bring the block back, but takes a new one', () => {
    const w = allocatorWithWatch();
    w.emit('add', 10, ['a']);
    w.emit('delete', 12, ['a']);
    w.emit('update', 10, ['a']);
    expect(w.holders()).toEqual([]);
    w.emit('add', 13, ['c']);
    expect(w.holders()).toEqual(['c']);
  });
});
