// Reads a component's /metrics: the sum and count of a histogram, a gauge's value, a counter.
import { readFileSync } from 'node:fs';
import { request } from 'node:https';

export type Samples = Map<string, number>;

export function parse(text: string, only?: string): Samples {
  const out: Samples = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#') || (only && !line.startsWith(only))) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

export async function scrape(url: string): Promise<Samples> {
  return parse(await (await fetch(url)).text());
}

/** The API server's own /metrics (its serving CA and a bearer token), samples of `only`. */
export function scrapeApiServer(
  ep: { server: string; token: string; caPath: string },
  only = 'apiserver_request_total',
): Promise<Samples> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${ep.server}/metrics`,
      { ca: readFileSync(ep.caPath), headers: { Authorization: `Bearer ${ep.token}` } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () =>
          res.statusCode === 200
            ? resolve(parse(body, only))
            : reject(new Error(`API server /metrics: ${res.statusCode}`)),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
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

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'APPLY', 'DELETE', 'DELETECOLLECTION']);
const READS = new Set(['GET', 'LIST']);

/**
 * Mutating requests the API server served between two scrapes of apiserver_request_total, by
 * "VERB resource[/subresource]" (every response code: a conflict costs the server too).
 */
export const writesBetween = (before: Samples, after: Samples) =>
  requestsBetween(before, after, MUTATING);

/** GET and LIST requests between two scrapes (watches are long-running: not counted). */
export const readsBetween = (before: Samples, after: Samples) =>
  requestsBetween(before, after, READS);

function requestsBetween(
  before: Samples,
  after: Samples,
  verbs: ReadonlySet<string>,
): Map<string, number> {
  const label = (key: string, l: string) => new RegExp(`[{,]${l}="([^"]*)"`).exec(key)?.[1] ?? '';
  const out = new Map<string, number>();
  for (const [key, v] of after) {
    if (!key.startsWith('apiserver_request_total{')) continue;
    const verb = label(key, 'verb');
    if (!verbs.has(verb)) continue;
    const n = v - (before.get(key) ?? 0);
    if (n <= 0) continue;
    const sub = label(key, 'subresource');
    const what = `${verb} ${label(key, 'resource')}${sub ? `/${sub}` : ''}`;
    out.set(what, (out.get(what) ?? 0) + n);
  }
  return out;
}
