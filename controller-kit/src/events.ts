// Kubernetes Events for what users should see in `kubectl describe`: phase transitions and
// failures. Recording never blocks or fails the caller; a lost Event is logged.
import { CoreV1Api, KubeConfig, type CoreV1Event } from '@kubernetes/client-node';
import type { KubeObject } from './informer.js';
import type { Logger } from './log.js';

export type EventType = 'Normal' | 'Warning';

export class EventRecorder {
  private readonly api: CoreV1Api;
  private inFlight = 0;

  constructor(
    kc: KubeConfig,
    private readonly component: string,
    private readonly logger?: Logger,
    private readonly maxInFlight = 32,
  ) {
    this.api = kc.makeApiClient(CoreV1Api);
  }

  record(obj: KubeObject, type: EventType, reason: string, message: string): void {
    const meta: { name?: string; namespace?: string; uid?: string; resourceVersion?: string } =
      obj.metadata ?? {};
    if (this.inFlight >= this.maxInFlight) {
      this.logger?.warn('event dropped: too many in flight', { reason, object: meta.name });
      return;
    }
    const now = new Date();
    const namespace = meta.namespace ?? 'default';
    const body: CoreV1Event = {
      metadata: { generateName: `${meta.name}.`, namespace },
      involvedObject: {
        apiVersion: obj.apiVersion,
        kind: obj.kind,
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        resourceVersion: meta.resourceVersion,
      },
      type,
      reason,
      message: message.slice(0, 1024),
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
      source: { component: this.component },
      reportingComponent: this.component,
      reportingInstance: process.env.HOSTNAME ?? this.component,
    };
    this.inFlight++;
    this.api
      .createNamespacedEvent({ namespace, body })
      .catch((err) =>
        this.logger?.warn('could not record event', {
          reason,
          object: meta.name,
          error: err as Error,
        }),
      )
      .finally(() => this.inFlight--);
  }
}
