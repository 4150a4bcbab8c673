// Helpers the operator's suites against a real API server share.
import type { KubeConfig } from '@kubernetes/client-node';
import { logger } from '@kova/controller-kit';
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
