// Helpers the operator's suites against a real API server share.
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { loadKubeConfig, logger } from '@kova/controller-kit';
import { applyCrds, LocalControlPlane, SimulatedFleet, type SimulatedHost } from '@kova/hack';
import { Registry } from 'prom-client';
import type { OperatorConfig } from './config.js';
import type { ReconcilerDeps } from './instance/sync-context.js';
import { Operator } from './operator.js';

export interface RunningOperator {
  op: Operator;
  abort: AbortController;
}

/** An operator with its informers synced, leading until stopped. */
export async function runOperator(
  kc: KubeConfig,
  config: OperatorConfig,
  name: string,
  overrides: Partial<Pick<ReconcilerDeps, 'patcher'>> = {},
): Promise<RunningOperator> {
  const op = new Operator(kc, config, logger(name), new Registry(), overrides);
  await op.startInformers();
  const abort = new AbortController();
  void op.lead(abort.signal);
  return { op, abort };
}

export async function stopOperator(o: RunningOperator): Promise<void> {
  o.abort.abort();
  await o.op.stop();
}

export interface FleetCluster {
  cp: LocalControlPlane;
  kc: KubeConfig;
  api: CustomObjectsApi;
  fleet: SimulatedFleet;
}

/** A real control plane with kova's CRDs, and these simulated hypervisors heartbeating. */
export async function startFleetCluster(
  hosts: SimulatedHost[],
  heartbeatMs: number,
): Promise<FleetCluster> {
  const cp = await LocalControlPlane.start();
  const kc = loadKubeConfig(cp.endpoints.kubeconfigPath);
  await applyCrds(cp.endpoints.kubeconfigPath);
  const fleet = new SimulatedFleet(kc);
  await fleet.create(hosts);
  fleet.startHeartbeats(heartbeatMs);
  return { cp, kc, api: kc.makeApiClient(CustomObjectsApi), fleet };
}

export async function stopFleetCluster(c: Partial<FleetCluster>): Promise<void> {
  await c.fleet?.stop();
  await c.cp?.stop();
}
