import { KubeConfig, type Cluster } from '@kubernetes/client-node';
import type { Agent, AgentOptions } from 'node:https';

/**
 * Loads the kubeconfig the way kubectl does: the given path, else $KUBECONFIG, else the
 * in-cluster service account, else ~/.kube/config.
 */
export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  if (path) kc.loadFromFile(path);
  else kc.loadFromDefault();
  reuseConnections(kc);
  return kc;
}

type AgentFactory = (cluster: Cluster | null, options: AgentOptions) => Agent;

/**
 * client-node 1.x builds a new https.Agent for every request: no connection is reused, so each
 * API call pays a TLS handshake on both ends (the scheduler benchmark's profile put it at a
 * fifth of the operator's CPU). One keep-alive agent per set of TLS settings instead.
 */
function reuseConnections(kc: KubeConfig): void {
  const target = kc as unknown as { createAgent: AgentFactory };
  const create = target.createAgent.bind(kc);
  const agents = new Map<string, Agent>();
  target.createAgent = (cluster, options) => {
    const key = [
      cluster?.server,
      cluster?.proxyUrl,
      options.ca,
      options.cert,
      options.key,
      options.rejectUnauthorized,
      options.servername,
    ]
      .map(String)
      .join('\0');
    let agent = agents.get(key);
    if (!agent) {
      agent = create(cluster, { ...options, keepAlive: true });
      agents.set(key, agent);
    }
    return agent;
  };
}
