// A small, dependency-free SVG line chart: a few named series on linear axes, for the charts
// each benchmark writes next to its JSON (bench/results/<name>.svg).

export interface Series {
  name: string;
  points: [number, number][];
}

export interface Chart {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** Draw a step line (for empirical distributions) instead of joining points. */
  steps?: boolean;
  /** Start the x axis near the smallest x instead of at 0. */
  xFromData?: boolean;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd'];
const W = 760;
const H = 420;
const M = { left: 70, right: 30, top: 40, bottom: 90 };

const esc = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** Round tick positions (1, 2, 5 × 10^k apart) covering lo..hi, the first at or below lo. */
function ticks(lo: number, hi: number, count = 6): number[] {
  if (!(hi > lo)) return [lo, lo + 1];
  const raw = (hi - lo) / count;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * pow >= raw) ?? 10) * pow;
  const first = Math.floor(lo / step) * step;
  const out: number[] = [first];
  while ((out[out.length - 1] as number) < hi - step * 1e-9)
    out.push(Number((first + out.length * step).toPrecision(12)));
  return out;
}

const label = (v: number) =>
  Math.abs(v) >= 10_000 ? `${+(v / 1000).toFixed(2)}k` : `${+v.toPrecision(6)}`;

/** At most `max` points of a series, evenly picked, first and last kept. */
function thin(points: [number, number][], max = 600): [number, number][] {
  if (points.length <= max) return points;
  const step = (points.length - 1) / (max - 1);
  return Array.from({ length: max }, (_, i) => points[Math.round(i * step)] as [number, number]);
}

export function lineChart(c: Chart): string {
  const all = c.series.flatMap((s) => s.points);
  const xs = all.map((p) => p[0]);
  const xt = ticks(c.xFromData ? Math.min(...xs) : 0, Math.max(...xs, 0));
  const yt = ticks(0, Math.max(...all.map((p) => p[1]), 0));
  const [xMin, xMax] = [xt[0] as number, xt[xt.length - 1] as number];
  const yMax = yt[yt.length - 1] as number;
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const x = (v: number) => (M.left + ((v - xMin) / (xMax - xMin)) * pw).toFixed(1);
  const y = (v: number) => (M.top + ph - (v / yMax) * ph).toFixed(1);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(c.title)}</text>`,
  ];
  for (const v of xt)
    out.push(
      `<line x1="${x(v)}" y1="${M.top}" x2="${x(v)}" y2="${M.top + ph}" stroke="#eee"/>`,
      `<text x="${x(v)}" y="${M.top + ph + 16}" text-anchor="middle">${label(v)}</text>`,
    );
  for (const v of yt)
    out.push(
      `<line x1="${M.left}" y1="${y(v)}" x2="${M.left + pw}" y2="${y(v)}" stroke="#eee"/>`,
      `<text x="${M.left - 6}" y="${y(v)}" text-anchor="end" dominant-baseline="middle">${label(v)}</text>`,
    );
  out.push(
    `<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#888"/>`,
    `<text x="${M.left + pw / 2}" y="${M.top + ph + 36}" text-anchor="middle">${esc(c.xLabel)}</text>`,
    `<text transform="translate(16 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(c.yLabel)}</text>`,
  );
  c.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length] as string;
    const pts = thin(s.points);
    let d = '';
    pts.forEach(([px, py], j) => {
      if (j === 0) d += `M${x(px)},${y(py)}`;
      else if (c.steps) d += `H${x(px)}V${y(py)}`;
      else d += `L${x(px)},${y(py)}`;
    });
    out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2"/>`);
    const lx = M.left + (i % 2) * (pw / 2);
    const ly = H - 30 + Math.floor(i / 2) * 16;
    out.push(
      `<line x1="${lx}" y1="${ly}" x2="${lx + 24}" y2="${ly}" stroke="${color}" stroke-width="3"/>`,
      `<text x="${lx + 30}" y="${ly}" dominant-baseline="middle">${esc(s.name)}</text>`,
    );
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

/** Empirical distribution of samples: x the value, y the fraction of samples ≤ x. */
export function cdf(samples: number[]): [number, number][] {
  const sorted = [...samples].sort((a, b) => a - b);
  const first: [number, number] = [sorted[0] ?? 0, 0];
  return [first, ...sorted.map((v, i): [number, number] => [v, (i + 1) / sorted.length])];
}

/** Latency distributions of several series, one step line each. */
export function latencyChart(title: string, unit: string, series: Series[]): string {
  return lineChart({
    title,
    xLabel: unit,
    yLabel: 'fraction of samples ≤ x',
    steps: true,
    xFromData: true,
    series,
  });
}
