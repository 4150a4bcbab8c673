// -o json|yaml, printed as kubectl prints objects and lists.
import { stringify } from 'yaml';
import type { Output } from './args.js';

export function formatObject(obj: unknown, output: Output): string {
  // kubectl indents JSON by four spaces.
  return output === 'json' ? `${JSON.stringify(obj, null, 4)}\n` : stringify(obj);
}

/** Several objects as kubectl's `get -o json` returns them: one v1 List. */
export function formatList(items: unknown[], output: Output): string {
  return formatObject(
    { apiVersion: 'v1', kind: 'List', metadata: { resourceVersion: '' }, items },
    output,
  );
}
