// waitUntil's reading of the action, with a stand-in for the API server: --timeout 0 reads it
// once, a transient failure is no result, a definite one ends the wait.
import { describe, expect, it } from '@jest/globals';
import { ApiException } from '@kubernetes/client-node';
import type { InstanceActionObject } from '@kova/crds';
import type { Cluster } from './client.js';
import { waitUntil } from './wait.js';

const created = {
  apiVersion: 'compute.kova.dev/v1alpha1',
  kind: 'InstanceAction',
  metadata: { name: 'web-1-stop-abcde', resourceVersion: '1' },
  spec: { instance: 'web-1', action: 'Stop', requestedBy: 'alice' },
} as InstanceActionObject;
const finished = { ...created, status: { phase: 'Succeeded' } } as InstanceActionObject;
const isFinished = (a: InstanceActionObject) => a.status?.phase === 'Succeeded';

/** A Cluster whose getAction answers with each of `answers` in turn. */
function cluster(...answers: (InstanceActionObject | Error)[]): Cluster {
  return {
    getAction: () => {
      const answer = answers.shift();
      return answer instanceof Error ? Promise.reject(answer) : Promise.resolve(answer);
    },
  } as unknown as Cluster;
}

describe('waitUntil', () => {
  it('with a timeout of 0, checks once, as kubectl wait --timeout=0 does', async () => {
    await expect(waitUntil(cluster(finished), created, 0, isFinished)).resolves.toEqual({
      action: finished,
      reached: true,
    });
    await expect(waitUntil(cluster(created), created, 0, isFinished)).resolves.toEqual({
      action: created,
      reached: false,
    });
  });

  it('takes a network failure for no answer yet and says it when time is up', async () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6443'), {
      code: 'ECONNREFUSED',
    });
    await expect(waitUntil(cluster(refused), created, 0, isFinished)).resolves.toEqual({
      action: created,
      reached: false,
      lastError: 'connect ECONNREFUSED 127.0.0.1:6443',
    });
  });

  it('ends at a definite answer', async () => {
    const forbidden = new ApiException(403, 'Forbidden', { message: 'forbidden' }, {});
    await expect(waitUntil(cluster(forbidden), created, 0, isFinished)).rejects.toBe(forbidden);
  });
});
