import { describe, expect, it } from '@jest/globals';
import { KovaError } from './errors.js';
import { logger } from './log.js';

describe('logger', () => {
  it('writes one JSON object per line with time, level, component, message and fields', () => {
    const lines: string[] = [];
    const log = logger('operator', {}, (l) => lines.push(l)).with({ instance: 'default/web-1' });
    log.info('phase changed', { from: 'Scheduling', to: 'Networking' });
    log.error('spawn failed', {
      error: new KovaError('DomainStartFailed', 'qemu exited: could not open disk'),
    });
    const [first, second] = lines.map((l) => JSON.parse(l));
    expect(first).toMatchObject({
      level: 'info',
      component: 'operator',
      msg: 'phase changed',
      instance: 'default/web-1',
      from: 'Scheduling',
      to: 'Networking',
    });
    expect(Number.isNaN(Date.parse(first.time))).toBe(false);
    expect(second).toMatchObject({
      level: 'error',
      error: 'qemu exited: could not open disk',
      errorReason: 'DomainStartFailed',
    });
  });

  it('drops lines below KOVA_LOG_LEVEL', () => {
    const lines: string[] = [];
    process.env.KOVA_LOG_LEVEL = 'warn';
    try {
      const log = logger('agent', {}, (l) => lines.push(l));
      log.info('noise');
      log.warn('signal');
    } finally {
      delete process.env.KOVA_LOG_LEVEL;
    }
    expect(lines.map((l) => JSON.parse(l).msg)).toEqual(['signal']);
  });
});
