// The command line, parsed the way kubectl (pflag) reads one: flags before or after the verb,
// `--flag value`, `--flag=value`, `-n value`, `-nvalue`, `-n=value`, and `--` ending the flags.
import { parseDuration } from './duration.js';
import {
  ACTION_VERBS,
  isActionVerb,
  isSessionVerb,
  SESSION_VERBS,
  type ActionVerbName,
  type SessionVerbName,
} from './verbs.js';

export type Verb = ActionVerbName | SessionVerbName | 'actions';
export type Output = 'json' | 'yaml';

/** Where to connect and as whom, as kubectl's global flags say; unset means the kubeconfig decides. */
export interface Target {
  kubeconfig?: string;
  context?: string;
  namespace?: string;
  /** A cluster or user of the kubeconfig other than the context's. */
  cluster?: string;
  user?: string;
  server?: string;
  /** Replaces the user's credentials. */
  token?: string;
  certificateAuthority?: string;
  insecureSkipTlsVerify?: boolean;
  /** Impersonation: the user and groups the API server acts as (Impersonate-User, -Group). */
  as?: string;
  asGroups?: string[];
  /** Bounds each API request but the watch; unset or 0 for no bound, as in kubectl. */
  requestTimeoutMs?: number;
}

export type Command =
  | { verb: 'help'; topic?: Verb }
  | {
      verb: ActionVerbName;
      target: Target;
      instance: string;
      hard: boolean;
      wait: boolean;
      timeoutMs: number;
      output?: Output;
    }
  | {
      verb: SessionVerbName;
      target: Target;
      instance: string;
      timeoutMs: number;
      /** console-log only: the last this many lines; all when unset. */
      tailLines?: number;
    }
  | { verb: 'actions'; target: Target; instance: string; output?: Output };

/** A command line kova cannot run; `verb` picks the usage to show with it. */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly verb?: Verb,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

export const DEFAULT_TIMEOUT = '5m';
/** A console's action only has to be taken up by the node agent, which takes seconds. */
export const SESSION_TIMEOUT = '1m';
/** The CRD's maximum for spec.tailLines. */
const MAX_TAIL_LINES = 1_000_000;

type FlagName =
  | 'namespace'
  | 'context'
  | 'kubeconfig'
  | 'cluster'
  | 'user'
  | 'server'
  | 'token'
  | 'certificate-authority'
  | 'insecure-skip-tls-verify'
  | 'as'
  | 'as-group'
  | 'request-timeout'
  | 'help'
  | 'output'
  | 'no-wait'
  | 'timeout'
  | 'hard'
  | 'tail';

interface Flag {
  short?: string;
  takesValue: boolean;
  /** Every value counts, as pflag's string arrays (--as-group a --as-group b). */
  repeatable?: boolean;
  /** Verbs that accept it; every verb when absent. */
  verbs?: readonly Verb[];
}

const ACTION_VERB_NAMES = Object.keys(ACTION_VERBS) as ActionVerbName[];
const SESSION_VERB_NAMES = Object.keys(SESSION_VERBS) as SessionVerbName[];

const FLAGS: Record<FlagName, Flag> = {
  namespace: { short: 'n', takesValue: true },
  context: { takesValue: true },
  kubeconfig: { takesValue: true },
  cluster: { takesValue: true },
  user: { takesValue: true },
  server: { short: 's', takesValue: true },
  token: { takesValue: true },
  'certificate-authority': { takesValue: true },
  'insecure-skip-tls-verify': { takesValue: false },
  as: { takesValue: true },
  'as-group': { takesValue: true, repeatable: true },
  'request-timeout': { takesValue: true },
  help: { short: 'h', takesValue: false },
  output: { short: 'o', takesValue: true, verbs: [...ACTION_VERB_NAMES, 'actions'] },
  'no-wait': { takesValue: false, verbs: ACTION_VERB_NAMES },
  timeout: { takesValue: true, verbs: [...ACTION_VERB_NAMES, ...SESSION_VERB_NAMES] },
  hard: { takesValue: false, verbs: ['restart'] },
  tail: { takesValue: true, verbs: ['console-log'] },
};

/**
 * Flags of the action verbs that a console verb refuses with a reason rather than as unknown,
 * since someone used to the action verbs may well try them.
 */
const NOT_FOR_SESSIONS: Partial<Record<FlagName, string>> = {
  output: 'it prints the console, not an InstanceAction',
  'no-wait': 'the console can only be reached once its action runs',
};

const isVerb = (word: string): word is Verb =>
  word === 'actions' || isActionVerb(word) || isSessionVerb(word);

export function parseArgs(argv: readonly string[]): Command {
  const { flags, positionals } = scan(argv);
  const [verb, ...names] = positionals;
  if (verb === undefined) {
    if (flags.has('help')) return { verb: 'help' };
    throw new UsageError('no command given');
  }
  if (!isVerb(verb)) throw new UsageError(`unknown command "${verb}" for "kubectl kova"`);
  for (const name of flags.keys()) {
    const allowed = FLAGS[name].verbs;
    if (allowed && !allowed.includes(verb)) throw new UsageError(refusal(name, verb), verb);
  }
  if (flags.has('help')) return { verb: 'help', topic: verb };
  if (names.length !== 1)
    throw new UsageError(
      names.length === 0
        ? 'an Instance NAME is required'
        : `one Instance NAME only, got ${names.join(' ')}`,
      verb,
    );
  const instance = names[0] as string;
  const target = targetFlags(flags, verb);
  const output = outputFlag(flags, verb);
  if (verb === 'actions') return { verb, target, instance, output };
  if (isSessionVerb(verb)) {
    const timeoutMs = timeoutFlag(flags, verb, SESSION_TIMEOUT);
    const tail = stringFlag(flags, 'tail');
    if (tail === undefined) return { verb, target, instance, timeoutMs };
    return { verb, target, instance, timeoutMs, tailLines: tailFlag(tail, verb) };
  }
  return {
    verb,
    target,
    instance,
    hard: flags.get('hard') === true,
    wait: flags.get('no-wait') !== true,
    timeoutMs: timeoutFlag(flags, verb, DEFAULT_TIMEOUT),
    output,
  };
}

function targetFlags(flags: Flags, verb: Verb): Target {
  const target: Target = {
    kubeconfig: stringFlag(flags, 'kubeconfig'),
    context: stringFlag(flags, 'context'),
    namespace: stringFlag(flags, 'namespace'),
    cluster: stringFlag(flags, 'cluster'),
    user: stringFlag(flags, 'user'),
    server: stringFlag(flags, 'server'),
    token: stringFlag(flags, 'token'),
    certificateAuthority: stringFlag(flags, 'certificate-authority'),
    insecureSkipTlsVerify: flags.get('insecure-skip-tls-verify') === true || undefined,
    as: stringFlag(flags, 'as'),
    asGroups: flags.get('as-group') as string[] | undefined,
    requestTimeoutMs: requestTimeoutFlag(stringFlag(flags, 'request-timeout'), verb),
  };
  // Only what was given, so that a Target compares as the flags read.
  for (const key of Object.keys(target) as (keyof Target)[])
    if (target[key] === undefined) delete target[key];
  return target;
}

/** kubectl's --request-timeout: whole seconds, or a duration with its unit; 0 for no bound. */
function requestTimeoutFlag(value: string | undefined, verb: Verb): number | undefined {
  if (value === undefined) return undefined;
  let ms = /^\d+$/.test(value) ? Number(value) * 1000 : NaN;
  try {
    if (Number.isNaN(ms)) ms = parseDuration(value);
  } catch {
    // kubectl's own words for a timeout it cannot read.
  }
  if (!(ms >= 0))
    throw new UsageError(
      'Invalid timeout value. Timeout must be a single integer in seconds, or an integer ' +
        'followed by a corresponding time unit (e.g. 1s | 2m | 3h)',
      verb,
    );
  return ms || undefined;
}

function refusal(name: FlagName, verb: Verb): string {
  const why = isSessionVerb(verb) ? NOT_FOR_SESSIONS[name] : undefined;
  return why ? `--${name} does not apply to ${verb}: ${why}` : `unknown flag: --${name}`;
}

/** What kubectl wait makes of a negative --timeout. */
export const A_WEEK_MS = 7 * 24 * 3_600_000;

/**
 * --timeout as kubectl wait reads it: 0 checks once without waiting (waitUntil reads the action
 * once), a negative one waits for a week.
 */
function timeoutFlag(flags: Flags, verb: Verb, byDefault: string): number {
  let ms: number;
  try {
    ms = parseDuration(stringFlag(flags, 'timeout') ?? byDefault);
  } catch (err) {
    throw new UsageError(`--timeout: ${(err as Error).message}`, verb);
  }
  return ms < 0 ? A_WEEK_MS : ms;
}

function tailFlag(value: string, verb: Verb): number {
  const lines = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!(lines >= 1 && lines <= MAX_TAIL_LINES))
    throw new UsageError(
      `invalid argument "${value}" for --tail: a number of lines from 1 to ${MAX_TAIL_LINES}`,
      verb,
    );
  return lines;
}

type Flags = Map<FlagName, string | boolean | string[]>;

/**
 * Splits argv into flags (the last of a repeated flag wins, as in kubectl, but for a repeatable
 * one, which keeps them all) and positionals.
 */
function scan(argv: readonly string[]): { flags: Flags; positionals: string[] } {
  const flags: Flags = new Map();
  const positionals: string[] = [];
  const verbSoFar = () => (positionals[0] && isVerb(positionals[0]) ? positionals[0] : undefined);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      positionals.push(arg);
      continue;
    }
    const { long, key, inline } = splitFlag(arg);
    const name = long ? flagByName(key) : flagByShort(key);
    if (!name)
      throw new UsageError(
        long ? `unknown flag: --${key}` : `unknown shorthand flag: '${key}' in ${arg}`,
        verbSoFar(),
      );
    if (!FLAGS[name].takesValue) {
      flags.set(name, booleanValue(name, inline, verbSoFar()));
      continue;
    }
    let value = inline;
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) throw new UsageError(`flag needs an argument: ${arg}`, verbSoFar());
    }
    const before = flags.get(name);
    flags.set(name, FLAGS[name].repeatable ? [...((before as string[]) ?? []), value] : value);
  }
  return { flags, positionals };
}

/** `--name=value`, `-n=value` and `-nvalue` carry their value in the same word. */
function splitFlag(arg: string): { long: boolean; key: string; inline?: string } {
  if (arg.startsWith('--')) {
    const [key, ...value] = arg.slice(2).split('=');
    return { long: true, key: key as string, inline: value.length ? value.join('=') : undefined };
  }
  const rest = arg.slice(2);
  return { long: false, key: arg.slice(1, 2), inline: rest ? rest.replace(/^=/, '') : undefined };
}

const flagByName = (key: string) => (Object.hasOwn(FLAGS, key) ? (key as FlagName) : undefined);

const flagByShort = (key: string) =>
  (Object.keys(FLAGS) as FlagName[]).find((name) => FLAGS[name].short === key);

function booleanValue(name: FlagName, inline: string | undefined, verb?: Verb): boolean {
  if (inline === undefined || inline === 'true') return true;
  if (inline === 'false') return false;
  throw new UsageError(`invalid argument "${inline}" for --${name}: use true or false`, verb);
}

function stringFlag(flags: Flags, name: FlagName): string | undefined {
  const value = flags.get(name);
  return typeof value === 'string' ? value : undefined;
}

function outputFlag(flags: Flags, verb: Verb): Output | undefined {
  const value = stringFlag(flags, 'output');
  if (value === undefined || value === 'json' || value === 'yaml') return value;
  throw new UsageError(
    `unable to match a printer suitable for the output format "${value}", allowed formats are: json,yaml`,
    verb,
  );
}
