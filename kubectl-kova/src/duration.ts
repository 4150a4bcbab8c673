// Durations as kubectl's --timeout takes them: Go's time.ParseDuration syntax (30s, 2m, 1h30m,
// 1.5h, 500ms), so a flag a user knows from kubectl wait means the same here.

const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const TERM = /^(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/;

/**
 * Milliseconds of a Go duration, negative ones included (kubectl gives those a meaning); throws
 * on anything time.ParseDuration would refuse.
 */
export function parseDuration(text: string): number {
  // Go accepts a bare 0 without a unit, and nothing else without one.
  if (text === '0') return 0;
  const sign = text.startsWith('-') ? -1 : 1;
  let rest = /^[-+]/.test(text) ? text.slice(1) : text;
  if (rest === '')
    throw new Error(`invalid duration "${text}": use a number with a unit, e.g. 30s or 2m`);
  let ms = 0;
  while (rest !== '') {
    const term = TERM.exec(rest);
    if (!term)
      throw new Error(`invalid duration "${text}": use a number with a unit, e.g. 30s or 2m`);
    ms += Number(term[1]) * (UNIT_MS[term[2] as string] as number);
    rest = rest.slice(term[0].length);
  }
  return sign * ms;
}
