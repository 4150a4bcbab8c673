import { describe, expect, it } from '@jest/globals';
import type { InstanceActionObject } from '@kova/crds';
import { actionsTable, humanDuration, renderTable } from './table.js';

const now = new Date('2026-11-25T12:00:00Z');

function action(
  name: string,
  created: string,
  spec: Partial<InstanceActionObject['spec']>,
  status?: InstanceActionObject['status'],
): InstanceActionObject {
  return {
    apiVersion: 'compute.kova.dev/v1alpha1',
    kind: 'InstanceAction',
    metadata: { name, namespace: 'default', uid: name, creationTimestamp: created },
    spec: { instance: 'web-1', action: 'Start', ...spec },
    status,
  };
}

describe('actionsTable', () => {
  it('lists the actions oldest first, in kubectl columns, with <none> for what is not known yet', () => {
    const table = actionsTable(
      [
        action('web-1-pause-b', '2026-11-25T11:59:30Z', { action: 'Pause', requestedBy: 'bob' }),
        action(
          'web-1-restart-a',
          '2026-11-25T09:00:00Z',
          { action: 'Reboot', hard: true, requestedBy: 'alice@example.com' },
          {
            phase: 'Succeeded',
            reason: 'Succeeded',
            startTime: '2026-11-25T09:00:02Z',
            completionTime: '2026-11-25T09:03:10Z',
          },
        ),
        action(
          'web-1-stop-c',
          '2026-11-25T11:59:40Z',
          { action: 'Stop', requestedBy: 'system:serviceaccount:ops:robot' },
          { phase: 'Running', startTime: '2026-11-25T11:59:45Z' },
        ),
      ],
      now,
    );
    expect(table).toBe(
      [
        'NAME              ACTION         PHASE       REASON      USER                              STARTED                DURATION   AGE',
        'web-1-restart-a   Reboot(hard)   Succeeded   Succeeded   alice@example.com                 2026-11-25T09:00:02Z   3m8s       3h',
        'web-1-pause-b     Pause          <none>      <none>      bob                               <none>                 <none>     30s',
        'web-1-stop-c      Stop           Running     <none>      system:serviceaccount:ops:robot   2026-11-25T11:59:45Z   15s        20s',
        '',
      ].join('\n'),
    );
  });
});

describe('renderTable', () => {
  it('pads every column but the last to its widest cell plus 3, at least 6, as kubectl does', () => {
    expect(
      renderTable([
        ['A', 'BB', 'C'],
        ['x', '', 'zz'],
      ]),
    ).toBe('A     BB       C\nx     <none>   zz\n');
  });
});

describe('humanDuration', () => {
  it("reads as apimachinery's HumanDuration", () => {
    const s = 1000;
    const m = 60 * s;
    const h = 60 * m;
    const d = 24 * h;
    const cases: [number, string][] = [
      [-5 * s, '<invalid>'],
      [-1 * s, '0s'],
      [0, '0s'],
      [59 * s, '59s'],
      [119 * s, '119s'],
      [2 * m, '2m'],
      [3 * m + 8 * s, '3m8s'],
      [10 * m + 30 * s, '10m'],
      [179 * m, '179m'],
      [3 * h, '3h'],
      [7 * h + 59 * m, '7h59m'],
      [47 * h, '47h'],
      [3 * d + 5 * h, '3d5h'],
      [8 * d, '8d'],
      [729 * d, '729d'],
      [2 * 365 * d + 10 * d, '2y10d'],
      [9 * 365 * d, '9y'],
    ];
    for (const [ms, text] of cases) expect([ms, humanDuration(ms)]).toEqual([ms, text]);
  });
});
