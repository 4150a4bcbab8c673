// An informer over client-node's ListWatch that keeps itself alive: ListWatch stops on any error
// (API server restarted, connection reset, list refused); we restart it with exponential
// backoff. A watch that ends with 410 Gone makes ListWatch relist by itself.
import {
  ADD,
  DELETE,
  ERROR,
  UPDATE,
  KubeConfig,
  KubernetesObjectApi,
  ListWatch,
  Watch,
  type KubernetesListObject,
  type KubernetesObject,
} from '@kubernetes/client-node';
import type { Registry } from 'prom-client';
import type { Logger } from './log.js';
import { kitMetrics, type KitMetrics } from './metrics.js';

export interface ResourceRef {
  apiVersion: string;
  kind: string;
  /** Plural resource name as in the API path, e.g. instances. */
  plural: string;
  /** Watch one namespace; all namespaces when unset. */
  namespace?: string;
}

export interface InformerOptions {
  labelSelector?: string;
  fieldSelector?: string;
  logger?: Logger;
  registry?: Registry;
  /** First restart delay; doubles up to maxBackoffMs. Default 200 ms. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

/** Any API object; custom resources keep their timestamps as strings, as the API sends them. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string };
}

export type InformerEvent = 'add' | 'update' | 'delete';
export type EventHandler<T> = (obj: T, type: InformerEvent) => void;

export function resourcePath(ref: ResourceRef): string {
  const base = ref.apiVersion.includes('/') ? `/apis/${ref.apiVersion}` : `/api/${ref.apiVersion}`;
  return ref.namespace
    ? `${base}/namespaces/${ref.namespace}/${ref.plural}`
    : `${base}/${ref.plural}`;
}

/** Key for a work queue: namespace/name, or name for cluster-scoped objects. */
export function objectKey(obj: KubeObject): string {
  const { namespace, name } = obj.metadata ?? {};
  return namespace ? `${namespace}/${name}` : `${name}`;
}

export class Informer<T extends KubeObject> {
  private readonly lw: ListWatch<KubernetesObject>;
  private readonly metrics: KitMetrics;
  private readonly handlers: EventHandler<T>[] = [];
  private backoffMs: number;
  private restartTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private synced = false;
  private syncWaiters: (() => void)[] = [];

  constructor(
    kc: KubeConfig,
    private readonly ref: ResourceRef,
    private readonly opts: InformerOptions = {},
  ) {
    this.metrics = kitMetrics(opts.registry);
    this.backoffMs = this.initialBackoff;
    const api = KubernetesObjectApi.makeApiClient(kc);
    const list = async () => {
      const result = (await api.list(
        ref.apiVersion,
        ref.kind,
        ref.namespace,
        undefined,
        undefined,
        undefined,
        opts.fieldSelector,
        opts.labelSelector,
      )) as KubernetesListObject<KubernetesObject>;
      // ListWatch fills its cache synchronously once this promise settles; report the list
      // only after that, so a caller woken by start() sees every object.
      setImmediate(() => this.listed());
      return result;
    };
    this.lw = new ListWatch<KubernetesObject>(
      resourcePath(ref),
      new Watch(kc),
      list,
      false,
      opts.labelSelector,
      opts.fieldSelector,
    );
    this.lw.on(ADD, (o) => this.emit(o as T, 'add'));
    this.lw.on(UPDATE, (o) => this.emit(o as T, 'update'));
    this.lw.on(DELETE, (o) => this.emit(o as T, 'delete'));
    this.lw.on(ERROR, (err) => this.onError(err));
  }

  on(handler: EventHandler<T>): void {
    this.handlers.push(handler);
  }

  /** Starts listing and watching; resolves after the first successful list. */
  async start(): Promise<void> {
    this.stopped = false;
    void this.lw.start();
    await this.waitForSync();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.restartTimer);
    await this.lw.stop();
  }

  hasSynced(): boolean {
    return this.synced;
  }

  get(name: string, namespace?: string): T | undefined {
    return this.lw.get(name, namespace) as T | undefined;
  }

  list(namespace?: string): readonly T[] {
    return this.lw.list(namespace) as readonly KubernetesObject[] as readonly T[];
  }

  private get resource(): string {
    return this.ref.plural;
  }

  private get initialBackoff(): number {
    return this.opts.initialBackoffMs ?? 200;
  }

  private waitForSync(): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((r) => this.syncWaiters.push(r));
  }

  private emit(obj: T, type: InformerEvent): void {
    this.metrics.informerEvents.inc({ resource: this.resource, type });
    this.backoffMs = this.initialBackoff;
    for (const h of this.handlers) h(obj, type);
  }

  private listed(): void {
    this.backoffMs = this.initialBackoff;
    this.markSynced();
  }

  private markSynced(): void {
    if (this.synced) return;
    this.synced = true;
    for (const w of this.syncWaiters.splice(0)) w();
  }

  private onError(err: unknown): void {
    if (this.stopped) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.opts.maxBackoffMs ?? 30_000);
    this.metrics.informerRestarts.inc({ resource: this.resource });
    this.opts.logger?.warn('watch failed; restarting', {
      resource: this.resource,
      error: err as Error,
      retryInMs: delay,
    });
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => void this.lw.start(), delay);
  }
}
