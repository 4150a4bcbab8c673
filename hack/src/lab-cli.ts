// `bash hack/lab/start.sh [COUNT | NAME...]`: a node lab to work with by hand, against the control
// plane of $KUBECONFIG. Prints on stdout one JSON line per node (its underlay address, recorded
// pids and how to enter it), then one for the lab; logs go to stderr. Runs until SIGINT, SIGTERM
// or SIGHUP, then stops the lab.
import { logger } from '@kova/controller-kit';
import { NodeLab } from './lab.js';

const log = logger('kova-lab');
const args = process.argv.slice(2);
const count = args.length === 1 && /^\d+$/.test(args[0] as string) ? Number(args[0]) : undefined;
const nodes = count === undefined && args.length > 0 ? args : undefined;

const lab = await NodeLab.start({ log, count: count ?? 2, nodes });
const out = (obj: object) => process.stdout.write(`${JSON.stringify(obj)}\n`);
for (const n of lab.nodes)
  out({
    node: n.name,
    underlayIp: n.underlayIp,
    stateDir: n.stateDir,
    pids: n.pids,
    enter: `nsenter -t ${n.pids.init} -n -m -p`,
  });
out({
  ready: true,
  dir: lab.dir,
  rootLink: lab.rootLink,
  gatewayIp: lab.gatewayIp,
  nodeKubeconfig: lab.nodeKubeconfigPath,
});
let stopping = false;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const)
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    lab.stop().then(
      () => process.exit(0),
      (err: Error) => {
        log.error('stopping the lab failed', { error: err });
        process.exit(1);
      },
    );
  });
