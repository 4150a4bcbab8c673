import { KubeConfig } from '@kubernetes/client-node';

/**
 * Loads the kubeconfig the way kubectl does: the given path, else $KUBECONFIG, else the
 * in-cluster service account, else ~/.kube/config.
 */
export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  if (path) kc.loadFromFile(path);
  else kc.loadFromDefault();
  return kc;
}
