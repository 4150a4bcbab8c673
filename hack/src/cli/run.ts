// `npm start`: a local kova to try. Starts the control plane, installs the CRDs, applies the
// examples, tells the user how to point kubectl at it, and stops everything on Ctrl-C.
import { logger } from '@kova/controller-kit';
import { readdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { applyCrds, applyFile } from '../apply-manifests.js';
import { kubectlPath, LocalControlPlane } from '../control-plane.js';

const log = logger('kova-run');
const examplesDir = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'examples');

async function main(): Promise<void> {
  const cp = await LocalControlPlane.start({ log: (msg, fields) => log.info(msg, fields) });
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await cp.stop();
    log.info('stopped; nothing left running');
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  try {
    await applyCrds(cp.endpoints.kubeconfigPath);
    for (const file of (await readdir(examplesDir)).filter((f) => f.endsWith('.yaml')).sort()) {
      await applyFile(join(examplesDir, file), { kubeconfigPath: cp.endpoints.kubeconfigPath });
      log.info('applied example', { file });
    }
  } catch (err) {
    log.error('could not set up kova', { error: err as Error });
    await stop();
  }
  process.stdout.write(
    [
      '',
      `kova's control plane is up (Kubernetes ${await cp.serverVersion()}). In another shell:`,
      '',
      `  export KUBECONFIG=${cp.endpoints.kubeconfigPath}`,
      `  export PATH=${dirname(kubectlPath())}:$PATH`,
      '  kubectl get kova -A',
      '  kubectl explain instance.spec',
      '',
      'The operator and the node agent are not part of this build yet, so the sample Instance',
      'waits with no phase. Press Ctrl-C to stop everything.',
      '',
    ].join('\n'),
  );
}

await main();
