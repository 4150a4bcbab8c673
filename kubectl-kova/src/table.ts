// The action history as kubectl prints a table: its column spacing, `<none>` for an empty cell,
// and its human durations (apimachinery's duration.HumanDuration), so it reads like `kubectl get`.
import type { InstanceActionObject } from '@kova/crds';

const HEADER = ['NAME', 'ACTION', 'PHASE', 'REASON', 'USER', 'STARTED', 'DURATION', 'AGE'];
const NONE = '<none>';

/** One row per action, oldest first: an Instance's history reads top to bottom. */
export function actionsTable(actions: readonly InstanceActionObject[], now: Date): string {
  const rows = sortOldestFirst(actions).map((a) => {
    const { startTime, completionTime } = a.status ?? {};
    const created = a.metadata.creationTimestamp;
    return [
      a.metadata.name,
      a.spec.hard ? `${a.spec.action}(hard)` : a.spec.action,
      a.status?.phase,
      a.status?.reason,
      a.spec.requestedBy,
      startTime,
      // A running action's duration grows until it ends, as kubectl's for a Job does.
      startTime ? humanDuration(since(startTime, completionTime ?? now)) : undefined,
      created ? humanDuration(since(created, now)) : undefined,
    ];
  });
  return renderTable([HEADER, ...rows]);
}

export function sortOldestFirst<T extends InstanceActionObject>(actions: readonly T[]): T[] {
  const time = (a: T) => new Date(a.metadata.creationTimestamp ?? 0).getTime();
  return [...actions].sort(
    (a, b) => time(a) - time(b) || a.metadata.name.localeCompare(b.metadata.name),
  );
}

/**
 * Columns as kubectl's tabwriter pads them (min width 6, padding 3); the last one unpadded so
 * no line ends in spaces.
 */
export function renderTable(rows: readonly (readonly (string | undefined)[])[]): string {
  const cells = rows.map((r) => r.map((c) => (c === undefined || c === '' ? NONE : c)));
  const widths = (cells[0] ?? []).map((_, i) =>
    Math.max(6, ...cells.map((r) => (r[i] ?? '').length + 3)),
  );
  return cells
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] as number))).join(''))
    .join('\n')
    .concat('\n');
}

const since = (from: string | Date, to: string | Date) =>
  new Date(to).getTime() - new Date(from).getTime();

/** apimachinery's HumanDuration: two significant units at most, coarser as time goes by. */
export function humanDuration(ms: number): string {
  const seconds = Math.trunc(ms / 1000);
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.trunc(seconds / 60);
  if (minutes < 10) return withRest(minutes, 'm', seconds % 60, 's');
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.trunc(minutes / 60);
  if (hours < 8) return withRest(hours, 'h', minutes % 60, 'm');
  if (hours < 48) return `${hours}h`;
  const days = Math.trunc(hours / 24);
  if (hours < 24 * 8) return withRest(days, 'd', hours % 24, 'h');
  if (hours < 24 * 365 * 2) return `${days}d`;
  const years = Math.trunc(days / 365);
  if (hours < 24 * 365 * 8) return withRest(years, 'y', days % 365, 'd');
  return `${years}y`;
}

const withRest = (n: number, unit: string, rest: number, restUnit: string) =>
  rest === 0 ? `${n}${unit}` : `${n}${unit}${rest}${restUnit}`;
