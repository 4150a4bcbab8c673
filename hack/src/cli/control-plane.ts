// Starts the local control plane, prints how to reach it, and stops it cleanly on Ctrl-C.
import { LocalControlPlane } from '../control-plane.js';
import { logger } from '@kova/controller-kit';

const log = logger('control-plane');
const cp = await LocalControlPlane.start({ log: (msg, fields) => log.info(msg, fields) });
log.info('control plane ready', { server: cp.endpoints.server, kubeconfig: cp.endpoints.kubeconfigPath });
process.stdout.write(`export KUBECONFIG=${cp.endpoints.kubeconfigPath}\n`);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await cp.stop();
  log.info('control plane stopped');
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
