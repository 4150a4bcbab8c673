import { describe, expect, it } from '@jest/globals';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { EscapeFilter } from './escape.js';

describe('EscapeFilter', () => {
  it('passes keys on up to Ctrl-], says so, and drops what follows', async () => {
    const filter = new EscapeFilter();
    let escaped = 0;
    filter.on('escape', () => escaped++);
    const keys = ['ls\r', '\x03', 'ex\x1dit\r', 'more\x1d'].map((k) => Buffer.from(k));
    const passed = text(Readable.from(keys).pipe(filter));
    expect(await passed).toBe('ls\r\x03ex');
    expect(escaped).toBe(1);
  });
});
