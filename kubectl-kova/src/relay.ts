// A console session's bytes once the ticket is on its way: the endpoint's answer, then the
// console to stdout and, for `console`, the keyboard (or a script's stdin) to the console. Every
// copy goes through pipe(), which pauses the source while the destination is full, so a flood of
// console output waits for the terminal instead of piling up in memory.
import type { TLSSocket } from 'node:tls';
import { AnswerReader } from './answer.js';
import { CertificateMismatch } from './endpoint.js';
import { EscapeFilter } from './escape.js';

export interface RelayOptions {
  /** How long the endpoint may take to connect and answer: what is left of --timeout. */
  answerWithinMs: number;
  /** console: the Instance, named in the greeting, whose console gets stdin. Unset: only read. */
  attachTo?: string;
}

type Finish = (result: number | Error) => void;

/** After a script's stdin ended, how long the endpoint has to send the rest and close. */
const LINGER_MS = 2000;

/** Resolves with the exit code once the endpoint closed or the user left; rejects on an error. */
export function relay(socket: TLSSocket, opts: RelayOptions): Promise<number> {
  return new Promise((resolve, reject) => {
    const undo: (() => void)[] = [];
    let over = false;
    const finish: Finish = (result) => {
      if (over) return;
      over = true;
      for (const step of undo) step();
      socket.destroy();
      if (typeof result === 'number') resolve(result);
      else reject(result);
    };
    const timer = setTimeout(
      () => finish(new Error('timed out waiting for the console endpoint to answer')),
      opts.answerWithinMs,
    );
    undo.push(() => clearTimeout(timer));
    socket.on('error', (err) =>
      finish(
        err instanceof CertificateMismatch ? err : new Error(`console connection: ${err.message}`),
      ),
    );
    const answer = new AnswerReader();
    answer.on('error', finish);
    // The endpoint closed and all it sent is on stdout.
    answer.on('end', () => finish(0));
    // A reader that went away (`| head`) ends the session, as it ends any command's output.
    process.stdout.on('error', (err: NodeJS.ErrnoException) =>
      finish(err.code === 'EPIPE' ? 0 : err),
    );
    answer.once('ok', () => {
      clearTimeout(timer);
      if (opts.attachTo !== undefined) undo.push(attachStdin(socket, opts.attachTo, finish));
    });
    socket.pipe(answer).pipe(process.stdout, { end: false });
  });
}

/** Sends stdin to the console; returns what undoes it (and gives the terminal back). */
function attachStdin(socket: TLSSocket, instance: string, finish: Finish): () => void {
  const stdin = process.stdin;
  process.stderr.write(`Connected to the serial console of ${instance} (escape: Ctrl-])\n`);
  if (!stdin.isTTY) {
    // A script's input goes as it is; its end half-closes the connection (pipe() ends the
    // socket), and what the guest still prints arrives until the endpoint closes.
    let linger: NodeJS.Timeout | undefined;
    stdin.once('end', () => (linger = setTimeout(() => finish(0), LINGER_MS)));
    stdin.pipe(socket);
    return () => {
      clearTimeout(linger);
      stdin.unpipe(socket);
      stdin.destroy();
    };
  }
  const keys = new EscapeFilter();
  keys.once('escape', () => finish(0));
  stdin.once('end', () => finish(0));
  // The terminal must get its mode back however the plugin ends: on 'exit' for an uncaught
  // error, and on a signal, which is raised again once restored, so the plugin dies of it.
  const onExit = () => stdin.setRawMode(false);
  const onSignal = (signal: NodeJS.Signals) => {
    finish(0);
    process.kill(process.pid, signal);
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  process.once('exit', onExit);
  for (const signal of signals) process.once(signal, onSignal);
  stdin.setRawMode(true);
  stdin.pipe(keys).pipe(socket);
  return () => {
    stdin.unpipe(keys);
    stdin.setRawMode(false);
    process.off('exit', onExit);
    for (const signal of signals) process.off(signal, onSignal);
    stdin.destroy();
  };
}
