/**
 * Writes `Accepted` status conditions to Kubernetes for the resources the controller owns
 * status of, after each model build: merge patches on the status subresource, only for
 * objects whose shown condition differs from what it should be, one request at a time.
 */
import { CustomObjectsApi, setHeaderOptions } from '@kubernetes/client-node';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../../common/log.ts';
import { realClock } from '../../common/clock.ts';
import type { Clock, TimerHandle } from '../../common/clock.ts';
import { errorMessage } from '../../common/errors.ts';
import type { StoreReader } from '../store.ts';
import type { InvalidResource } from '../model/labels.ts';
import { STATUS_KINDS, planStatus } from './conditions.ts';
import type { StatusPatch } from './conditions.ts';

/** Something that reports resource validity back where users look for it. */
export interface StatusWriter {
  /** Called after every build with the store and the build's invalid resources; must not throw. */
  update(store: StoreReader, invalid: readonly InvalidResource[]): void;
  /** Waits for writes in flight; later updates are ignored. Idempotent. */
  close(): Promise<void>;
}

/** Sends one status merge patch; rejects with the API error. */
export type PatchStatusFn = (p: StatusPatch) => Promise<void>;

/** A PatchStatusFn on a cluster: `PATCH .../<plural>/<name>/status`, `application/merge-patch+json`. */
export function kubernetesPatcher(kc: KubeConfig): PatchStatusFn {
  const api = kc.makeApiClient(CustomObjectsApi);
  const opts = setHeaderOptions('Content-Type', 'application/merge-patch+json');
  return async (p) => {
    const k = STATUS_KINDS[p.kind];
    if (k === undefined) throw new Error(`no status for kind ${p.kind}`);
    await api.patchNamespacedCustomObjectStatus({ group: k.group, version: k.version, plural: k.plural, namespace: p.namespace, name: p.name, body: p.body, fieldManager: 'rondo-controller' }, opts);
  };
}

/** StatusWriter for the Kubernetes source. */
export class KubernetesStatusWriter implements StatusWriter {
  readonly #patch: PatchStatusFn;
  readonly #log: Logger;
  readonly #now: () => Date;
  readonly #onWrite: ((p: StatusPatch, ok: boolean) => void) | undefined;
  /** Last signature sent per object, so a write the watch has not echoed yet is not resent. */
  readonly #written = new Map<string, string>();
  #latest: { store: StoreReader; invalid: readonly InvalidResource[] } | undefined;
  #running: Promise<void> | undefined;
  #closed = false;
  readonly #retryMs: { initial: number; max: number };
  #retryDelay: number;
  #retryTimer: TimerHandle | undefined;
  readonly #clock: Clock;

  /** `retryMs`: pacing of retries after failed writes when no new build comes (default 1 s doubling to 60 s); `clock`: its timer. */
  constructor(o: { patch: PatchStatusFn; log: Logger; now?: () => Date; onWrite?: (p: StatusPatch, ok: boolean) => void; retryMs?: { initial: number; max: number }; clock?: Clock }) {
    this.#clock = o.clock ?? realClock;
    this.#patch = o.patch;
    this.#log = o.log;
    this.#now = o.now ?? (() => new Date(this.#clock.now()));
    this.#onWrite = o.onWrite;
    this.#retryMs = o.retryMs ?? { initial: 1000, max: 60_000 };
    this.#retryDelay = this.#retryMs.initial;
  }

  update(store: StoreReader, invalid: readonly InvalidResource[]): void {
    if (this.#closed) return;
    this.#latest = { store, invalid };
    this.#running ??= this.#drain().finally(() => { this.#running = undefined; });
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#clock.clearTimeout(this.#retryTimer);
    await this.#running;
  }

  /** Tries again later even if no new build comes (a new build replaces the pending retry). */
  #scheduleRetry(store: StoreReader, invalid: readonly InvalidResource[]): void {
    this.#clock.clearTimeout(this.#retryTimer);
    const delay = this.#retryDelay;
    this.#retryDelay = Math.min(this.#retryMs.max, delay * 2);
    this.#retryTimer = this.#clock.setTimeout(() => {
      this.#retryTimer = undefined;
      // Only if nothing newer is queued: a newer build carries its own plan.
      if (this.#latest === undefined) this.update(store, invalid);
    }, delay);
    this.#retryTimer.unref();
  }

  /** Plans against the newest build until nothing new arrived while writing. */
  async #drain(): Promise<void> {
    while (this.#latest !== undefined && !this.#closed) {
      const { store, invalid } = this.#latest;
      this.#latest = undefined;
      let failed = false;
      for (const p of planStatus(store, invalid, this.#written, this.#now())) {
        if (this.#closed) return;
        const key = `${p.kind}/${p.namespace}/${p.name}`;
        try {
          await this.#patch(p);
          this.#written.set(key, p.signature);
          this.#onWrite?.(p, true);
          this.#log.info('status written', { kind: p.kind, namespace: p.namespace, name: p.name, accepted: p.accepted });
        } catch (e) {
          // Not remembered: the next build (e.g. the object's next watch event) tries again.
          this.#written.delete(key);
          failed = true;
          this.#onWrite?.(p, false);
          this.#log.warn('status write failed; will retry', { kind: p.kind, namespace: p.namespace, name: p.name, err: errorMessage(e), hint: 'check the controller RBAC: patch on <plural>/status' });
        }
      }
      if (failed) this.#scheduleRetry(store, invalid);
      else this.#retryDelay = this.#retryMs.initial;
      // Forget objects that are gone, so the map does not grow with churn.
      for (const key of this.#written.keys()) {
        const [kind = '', ns, name = ''] = key.split('/');
        if (store.get(kind, ns, name) === undefined) this.#written.delete(key);
      }
    }
  }
}
