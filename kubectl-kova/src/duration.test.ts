import { describe, expect, it } from '@jest/globals';
import { parseDuration } from './duration.js';

describe('parseDuration', () => {
  it("reads Go's duration syntax, as kubectl's --timeout does", () => {
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('2m')).toBe(120_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('1.5h')).toBe(5_400_000);
    expect(parseDuration('2m3.5s')).toBe(123_500);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('.5s')).toBe(500);
    expect(parseDuration('+10s')).toBe(10_000);
    expect(parseDuration('1500us')).toBe(1.5);
    expect(parseDuration('0')).toBe(0);
    expect(parseDuration('-1s')).toBe(-1000);
  });

  it('refuses what is not a duration', () => {
    for (const bad of ['', '-', '5', 's', '1d', '5 s', '1m-2s', '--1s', '1.5.3s', 'abc'])
      expect(() => parseDuration(bad)).toThrow(`invalid duration "${bad}"`);
  });
});
