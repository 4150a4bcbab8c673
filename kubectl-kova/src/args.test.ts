import { describe, expect, it } from '@jest/globals';
import { parseArgs, UsageError } from './args.js';

const usageError = (argv: string[]) => {
  try {
    parseArgs(argv);
  } catch (err) {
    if (err instanceof UsageError) return { message: err.message, verb: err.verb };
    throw err;
  }
  throw new Error(`parsed: ${argv.join(' ')}`);
};

describe('parseArgs', () => {
  it('reads an action verb with its defaults: wait 5 minutes, no output format', () => {
    expect(parseArgs(['start', 'web-1'])).toEqual({
      verb: 'start',
      target: {},
      instance: 'web-1',
      hard: false,
      wait: true,
      timeoutMs: 300_000,
      output: undefined,
    });
  });

  it('takes flags before and after the verb, in every form pflag accepts', () => {
    const cmd = parseArgs([
      '-nprod',
      'restart',
      '--context=lab',
      'web-1',
      '--kubeconfig',
      '/tmp/kc',
      '--hard',
      '--timeout=30s',
      '-o=yaml',
      '--no-wait',
    ]);
    expect(cmd).toEqual({
      verb: 'restart',
      target: { namespace: 'prod', context: 'lab', kubeconfig: '/tmp/kc' },
      instance: 'web-1',
      hard: true,
      wait: false,
      timeoutMs: 30_000,
      output: 'yaml',
    });
    expect(parseArgs(['stop', 'a', '-n', 'x', '--namespace', 'y'])).toMatchObject({
      target: { namespace: 'y' },
    });
    expect(parseArgs(['pause', 'a', '-ojson'])).toMatchObject({ output: 'json' });
    expect(parseArgs(['restart', 'a', '--hard=false'])).toMatchObject({ hard: false });
  });

  it("reads kubectl's global flags for the connection and impersonation", () => {
    expect(
      parseArgs([
        'start',
        'web-1',
        '--as=alice',
        '--as-group',
        'oncall',
        '--as-group=ops',
        '--token',
        't0k',
        '-s',
        'https://10.0.0.1:6443',
        '--user=admin',
        '--cluster',
        'lab',
        '--certificate-authority=/ca.crt',
        '--insecure-skip-tls-verify',
        '--request-timeout',
        '10',
      ]),
    ).toMatchObject({
      target: {
        as: 'alice',
        asGroups: ['oncall', 'ops'],
        token: 't0k',
        server: 'https://10.0.0.1:6443',
        user: 'admin',
        cluster: 'lab',
        certificateAuthority: '/ca.crt',
        insecureSkipTlsVerify: true,
        requestTimeoutMs: 10_000,
      },
    });
    // --request-timeout as kubectl reads it: seconds, a duration, or 0 for no bound.
    expect(parseArgs(['actions', 'a', '--request-timeout=1m30s'])).toMatchObject({
      target: { requestTimeoutMs: 90_000 },
    });
    expect(parseArgs(['actions', 'a', '--request-timeout=0'])).toMatchObject({ target: {} });
    for (const bad of ['-1s', 'soon', '1.5'])
      expect(usageError(['actions', 'a', `--request-timeout=${bad}`])).toEqual({
        message:
          'Invalid timeout value. Timeout must be a single integer in seconds, or an integer ' +
          'followed by a corresponding time unit (e.g. 1s | 2m | 3h)',
        verb: 'actions',
      });
  });

  it('reads --timeout as kubectl wait does: 0 checks once, a negative one waits a week', () => {
    expect(parseArgs(['stop', 'a', '--timeout=0'])).toMatchObject({ timeoutMs: 0 });
    expect(parseArgs(['stop', 'a', '--timeout=-1s'])).toMatchObject({
      timeoutMs: 7 * 24 * 3_600_000,
    });
    expect(parseArgs(['console', 'a', '--timeout=-5m'])).toMatchObject({
      timeoutMs: 7 * 24 * 3_600_000,
    });
  });

  it('ends flags at --, so a name may start with a dash', () => {
    expect(parseArgs(['rebuild', '--', '-odd'])).toMatchObject({
      verb: 'rebuild',
      instance: '-odd',
    });
  });

  it('reads actions with -o and the global flags', () => {
    expect(parseArgs(['actions', 'web-1', '-o', 'json', '-n', 'prod'])).toEqual({
      verb: 'actions',
      target: { namespace: 'prod' },
      instance: 'web-1',
      output: 'json',
    });
  });

  it('reads the console verbs: a 1 minute timeout, --tail for console-log', () => {
    expect(parseArgs(['console', 'web-1'])).toEqual({
      verb: 'console',
      target: {},
      instance: 'web-1',
      timeoutMs: 60_000,
    });
    expect(
      parseArgs(['console-log', 'web-1', '--tail=200', '--timeout', '10s', '-n', 'x']),
    ).toEqual({
      verb: 'console-log',
      target: { namespace: 'x' },
      instance: 'web-1',
      timeoutMs: 10_000,
      tailLines: 200,
    });
    expect(parseArgs(['console-log', 'web-1', '--tail', '1000000'])).toMatchObject({
      tailLines: 1_000_000,
    });
  });

  it('refuses what makes no sense for a console: -o, --no-wait, a --tail that is no count', () => {
    expect(usageError(['console', 'web-1', '-o', 'json'])).toEqual({
      message: '--output does not apply to console: it prints the console, not an InstanceAction',
      verb: 'console',
    });
    expect(usageError(['console-log', 'web-1', '--no-wait'])).toEqual({
      message:
        '--no-wait does not apply to console-log: the console can only be reached once its action runs',
      verb: 'console-log',
    });
    expect(usageError(['console', 'web-1', '--tail', '5'])).toEqual({
      message: 'unknown flag: --tail',
      verb: 'console',
    });
    expect(usageError(['console', 'web-1', '--hard']).message).toBe('unknown flag: --hard');
    expect(usageError(['stop', 'web-1', '--tail', '5']).message).toBe('unknown flag: --tail');
    for (const tail of ['0', '-3', '1.5', '10k', '', '1000001', '99999999999999999999'])
      expect(usageError(['console-log', 'web-1', `--tail=${tail}`])).toEqual({
        message: `invalid argument "${tail}" for --tail: a number of lines from 1 to 1000000`,
        verb: 'console-log',
      });
    expect(usageError(['console-log', 'web-1', '--tail']).message).toBe(
      'flag needs an argument: --tail',
    );
  });

  it('asks for help overall or per verb, even without a NAME', () => {
    expect(parseArgs(['--help'])).toEqual({ verb: 'help' });
    expect(parseArgs(['-h'])).toEqual({ verb: 'help' });
    expect(parseArgs(['restart', '-h'])).toEqual({ verb: 'help', topic: 'restart' });
    expect(parseArgs(['actions', '--help'])).toEqual({ verb: 'help', topic: 'actions' });
    expect(parseArgs(['console-log', '-h'])).toEqual({ verb: 'help', topic: 'console-log' });
  });

  it('refuses what kubectl would refuse, naming the verb whose usage to show', () => {
    expect(usageError([])).toEqual({ message: 'no command given', verb: undefined });
    expect(usageError(['reboot', 'web-1'])).toEqual({
      message: 'unknown command "reboot" for "kubectl kova"',
      verb: undefined,
    });
    expect(usageError(['start', 'web-1', '--force'])).toEqual({
      message: 'unknown flag: --force',
      verb: 'start',
    });
    expect(usageError(['start', 'web-1', '-x'])).toEqual({
      message: "unknown shorthand flag: 'x' in -x",
      verb: 'start',
    });
    // --hard is restart's alone; the others would ask the API for what the CRD forbids.
    expect(usageError(['stop', 'web-1', '--hard'])).toEqual({
      message: 'unknown flag: --hard',
      verb: 'stop',
    });
    expect(usageError(['actions', 'web-1', '--no-wait']).message).toBe('unknown flag: --no-wait');
    expect(usageError(['start'])).toEqual({
      message: 'an Instance NAME is required',
      verb: 'start',
    });
    expect(usageError(['start', 'a', 'b']).message).toBe('one Instance NAME only, got a b');
    expect(usageError(['start', 'a', '-n']).message).toBe('flag needs an argument: -n');
    expect(usageError(['start', 'a', '-o', 'wide']).message).toBe(
      'unable to match a printer suitable for the output format "wide", allowed formats are: json,yaml',
    );
    expect(usageError(['start', 'a', '--timeout', '5']).message).toMatch(
      /^--timeout: invalid duration "5"/,
    );
    expect(usageError(['start', 'a', '--no-wait=maybe']).message).toMatch(
      /invalid argument "maybe"/,
    );
  });
});
