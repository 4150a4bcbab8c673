// One real control plane per jest run, shared by every test file: tests reach it through
// $KUBECONFIG, which worker processes inherit. Set KOVA_TEST_KUBECONFIG to test against an
// existing cluster instead. Jest loads this file outside its module mapping, so it uses the
// compiled hack package (`npm run jest` builds it first).
import { applyCrds, LocalControlPlane } from '../dist/index.js';

export default async function globalSetup() {
  const existing = process.env.KOVA_TEST_KUBECONFIG;
  if (existing) {
    process.env.KUBECONFIG = existing;
  } else {
    const cp = await LocalControlPlane.start();
    globalThis.kovaControlPlane = cp;
    process.env.KUBECONFIG = cp.endpoints.kubeconfigPath;
  }
  await applyCrds(process.env.KUBECONFIG);
}
