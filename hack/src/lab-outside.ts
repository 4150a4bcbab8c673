// A host beyond the lab's nodes, on its underlay: what a guest reaches through its Network's
// egress (a stand-in for the internet, never a real outside address). A network namespace of
// its own, held by one process that dies with the test, with a veth onto the lab switch and an
// HTTP server that answers with the address it saw the request come from.
import { spawn, type ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { NodeLab } from './lab.js';
import { until } from './until.js';

const run = promisify(execFile);
export const OUTSIDE_PORT = 8080;

export class OutsideHost {
  private constructor(
    /** Its address on the underlay. */
    readonly ip: string,
    private readonly holder: ChildProcess,
    private readonly server: ChildProcess,
  ) {}

  /** Joins the lab's switch as `<subnet>.250`; the server answers "seen <client address>". */
  static async start(lab: NodeLab): Promise<OutsideHost> {
    const holder = spawn(
      'setpriv',
      ['--pdeathsig', 'KILL', '--', 'unshare', '--net', '--', 'sleep', 'infinity'],
      { stdio: 'ignore' },
    );
    const pid = holder.pid as number;
    await until('the outside namespace', async () => {
      const comm = await run('cat', [`/proc/${pid}/comm`]).catch(() => ({ stdout: '' }));
      return comm.stdout.trim() === 'sleep';
    });
    const ip = `${lab.subnet}.250`;
    const port = `outside${lab.slot}`;
    const inOutside = (...args: string[]) =>
      run('nsenter', ['-t', String(pid), '-n', 'ip', ...args]);
    await run('ip', [
      'link',
      'add',
      'eth0',
      'netns',
      String(pid),
      'type',
      'veth',
      'peer',
      'name',
      port,
      'netns',
      String(lab.switchPid),
    ]);
    await run('nsenter', [
      '-t',
      String(lab.switchPid),
      '-n',
      'ip',
      'link',
      'set',
      port,
      'master',
      'switch',
      'up',
    ]);
    await inOutside('link', 'set', 'lo', 'up');
    await inOutside('addr', 'add', `${ip}/24`, 'dev', 'eth0');
    await inOutside('link', 'set', 'eth0', 'up');
    const script = `require('http').createServer((q,s)=>s.end('seen '+q.socket.remoteAddress)).listen(${OUTSIDE_PORT},'${ip}',()=>console.log('ready'))`;
    const server = spawn('setpriv', [
      '--pdeathsig',
      'KILL',
      '--',
      'nsenter',
      '-t',
      String(pid),
      '-n',
      process.execPath,
      '-e',
      script,
    ]);
    await new Promise<void>((resolve, reject) => {
      server.stdout?.once('data', () => resolve());
      server.once('exit', (code) => reject(new Error(`the outside server exited with ${code}`)));
    });
    return new OutsideHost(ip, holder, server);
  }

  /** Its namespace, veth and server go with the holder process. */
  stop(): void {
    this.server.kill('SIGKILL');
    this.holder.kill('SIGKILL');
  }
}
