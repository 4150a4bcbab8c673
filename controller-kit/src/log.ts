// Structured JSON logs, one object per line on stderr, so stdout stays free for a command's output.
import { apiMessage, apiStatus } from './errors.js';
export type Level = 'debug' | 'info' | 'warn' | 'error';
export type Fields = Record<string, unknown>;

const rank: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  /** A logger that adds these fields to every line. */
  with(fields: Fields): Logger;
}

export type Sink = (line: string) => void;

const defaultSink: Sink = (line) => process.stderr.write(`${line}\n`);

function threshold(): number {
  const level = (process.env.KOVA_LOG_LEVEL ?? 'info') as Level;
  return rank[level] ?? rank.info;
}

/** Errors become {error, reason} so a log reader sees the reason code, not "[object Object]". */
function serialise(fields: Fields): Fields {
  const out: Fields = {};
  for (const [k, v] of Object.entries(fields)) {
    if (v instanceof Error) {
      out[k] = apiMessage(v);
      const reason = (v as { reason?: unknown }).reason;
      if (reason !== undefined) out[`${k}Reason`] = reason;
      const status = apiStatus(v);
      if (status !== undefined) out[`${k}Status`] = status;
    } else {
      out[k] = v;
    }
  }
  return out;
}

export function logger(component: string, base: Fields = {}, sink: Sink = defaultSink): Logger {
  const min = threshold();
  const write = (level: Level, msg: string, fields?: Fields) => {
    if (rank[level] < min) return;
    const line = {
      time: new Date().toISOString(),
      level,
      component,
      msg,
      ...serialise({ ...base, ...fields }),
    };
    sink(JSON.stringify(line));
  };
  return {
    debug: (msg, f) => write('debug', msg, f),
    info: (msg, f) => write('info', msg, f),
    warn: (msg, f) => write('warn', msg, f),
    error: (msg, f) => write('error', msg, f),
    with: (fields) => logger(component, { ...base, ...fields }, sink),
  };
}

/** A Logger that drops every line: for tests of code that must be given one. */
export const quietLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  with() {
    return quietLogger;
  },
};
