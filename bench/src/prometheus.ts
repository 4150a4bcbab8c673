// Reads a component's /metrics: the sum and count of a histogram, a gauge's value.
export type Samples = Map<string, number>;

export async function scrape(url: string): Promise<Samples> {
  const text = await (await fetch(url)).text();
  const out: Samples = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

/** Sum of every sample of `name` whose labels contain each of `labels` (e.g. 'op="status"'). */
export function total(samples: Samples, name: string, ...labels: string[]): number {
  let sum = 0;
  for (const [key, v] of samples) {
    const bare = key.split('{')[0];
    if (bare === name && labels.every((l) => key.includes(l))) sum += v;
  }
  return sum;
}
