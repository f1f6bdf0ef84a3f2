/**
 * One kind's list-then-watch loop against the Kubernetes API (client-go's "reflector").
 *
 * Built on the client library's `Watch` (HTTP streaming, auth, inactivity timeout) and its
 * typed list calls, but not on its `ListWatch`: that one never asks for bookmarks, gives up
 * for good on any error other than 410, backs off without jitter, can open a new watch after
 * `stop()` when the stop lands during its delay or list, and reports a re-list as separate
 * add/delete callbacks instead of one snapshot the store can swap atomically.
 */
import type { Watch } from '@kubernetes/client-node';
import { RondoError, errorMessage } from '../../common/errors.ts';
import type { Logger } from '../../common/log.ts';
import type { Clock, TimerHandle } from '../../common/clock.ts';
import type { KindInfo, ListFn } from './kubernetes-kinds.ts';
import { toKubeObject } from './kubernetes-plain.ts';
import type { KubeObject, ResourceSink } from './types.ts';
import { backoffDelay } from '../../common/backoff.ts';
import type { BackoffSettings } from '../../common/backoff.ts';

/** HTTP status of an error from the typed API (`code`) or from `Watch` (`statusCode`). */
export function httpStatus(e: unknown): number | undefined {
  if (e === null || typeof e !== 'object') return undefined;
  const { code, statusCode } = e as { code?: unknown; statusCode?: unknown };
  if (typeof statusCode === 'number') return statusCode;
  if (typeof code === 'number') return code;
  return undefined;
}

/** Everything a reflector needs; built by KubernetesSource. */
export interface ReflectorOptions {
  info: KindInfo;
  list: ListFn;
  watch: Pick<Watch, 'watch'>;
  sink: ResourceSink;
  log: Logger;
  /** API server URL, for error messages. */
  server: string;
  pageSize: number;
  backoff: BackoffSettings;
  /** Re-list interval for an optional kind whose CRD is not installed. */
  missingRetryMs: number;
  /** A watch that lasted this long or delivered an event counts as healthy (resets backoff). */
  healthyWatchMs: number;
  random: () => number;
  /** Retry and re-list timers, and the watch's age. */
  clock: Clock;
  /** Called for every watch restart (drop, error, expiry, server timeout). */
  onRestart: (reason: string) => void;
  /** Called for every re-list after the first one. */
  onRelist: () => void;
}

interface WatchEventStatus { code?: unknown; reason?: unknown; message?: unknown }

/** Lists, then watches from the list's resourceVersion, forever, until close(). */
export class KindReflector {
  readonly #o: ReflectorOptions;
  #rv = '';
  #closed = false;
  #listed = 0;
  #attempt = 0;
  #missing = false;
  #timer: TimerHandle | undefined;
  #abort: AbortController | undefined;
  #inflight: Promise<void> | undefined;
  #synced = false;
  #resolveSynced!: () => void;
  readonly #syncedPromise: Promise<void>;
  /** Last error seen, for start-up diagnostics. */
  lastError: string | undefined;

  constructor(o: ReflectorOptions) {
    this.#o = o;
    this.#syncedPromise = new Promise((resolve) => { this.#resolveSynced = resolve; });
  }

  /** Starts the loop; resolves after the first successful list (or a 404 for an optional kind). */
  start(): Promise<void> {
    this.#schedule(0, 'list');
    return this.#syncedPromise;
  }

  /** The kind this reflector watches. */
  get kind(): string {
    return this.#o.info.kind;
  }

  /** True once the first list has landed in the sink. */
  get synced(): boolean {
    return this.#synced;
  }

  /** The resourceVersion the next watch resumes from ('' = re-list). */
  get resourceVersion(): string {
    return this.#rv;
  }

  /** Stops timers and the open watch; waits for an in-flight list to settle. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#o.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#abort?.abort();
    this.#abort = undefined;
    await this.#inflight?.catch(() => undefined);
  }

  #schedule(ms: number, step: 'list' | 'watch'): void {
    if (this.#closed) return;
    this.#timer = this.#o.clock.setTimeout(() => {
      this.#timer = undefined;
      const p = step === 'list' ? this.#list() : this.#watch();
      this.#inflight = p.catch((e: unknown) => this.#o.log.error('reflector step failed', { kind: this.#o.info.kind, error: errorMessage(e) }));
    }, ms);
  }

  #markSynced(): void {
    if (this.#synced) return;
    this.#synced = true;
    this.#resolveSynced();
  }

  async #list(): Promise<void> {
    const { info, log } = this.#o;
    if (this.#listed > 0) this.#o.onRelist();
    this.#listed++;
    const items: unknown[] = [];
    let rv = '';
    try {
      let token = '';
      do {
        const page = await this.#o.list({ limit: this.#o.pageSize, continueToken: token });
        if (this.#closed) return;
        // Every page of one list is served from the first page's snapshot.
        if (rv === '') rv = page.resourceVersion;
        for (const item of page.items) items.push(item);
        token = page.continueToken;
      } while (token !== '');
    } catch (e) {
      if (this.#closed) return;
      const status = httpStatus(e);
      if (status === 404 && info.optional) {
        if (!this.#missing) log.warn('kind not served by the API server (CRD not installed?); treating as empty and retrying slowly', { kind: info.kind, path: info.path });
        this.#missing = true;
        this.#o.sink.replaceAll(info.kind, []);
        this.#markSynced();
        this.#schedule(this.#o.missingRetryMs, 'list');
        return;
      }
      this.lastError = describeListError(e, status, info, this.#o.server);
      const delay = backoffDelay(this.#attempt++, this.#o.backoff, this.#o.random);
      log.warn('list failed; retrying', { kind: info.kind, error: this.lastError, retryMs: delay });
      this.#schedule(delay, 'list');
      return;
    }
    if (this.#missing) log.info('kind is now served', { kind: info.kind });
    this.#missing = false;
    this.lastError = undefined;
    const objects: KubeObject[] = [];
    for (const item of items) {
      const obj = this.#convert(item);
      if (obj !== undefined) objects.push(obj);
    }
    this.#o.sink.replaceAll(info.kind, objects);
    this.#rv = rv;
    log.debug('listed', { kind: info.kind, count: objects.length, resourceVersion: rv });
    this.#markSynced();
    await this.#watch();
  }

  #convert(item: unknown): KubeObject | undefined {
    try {
      return toKubeObject(item, this.#o.info.apiVersion, this.#o.info.kind);
    } catch (e) {
      this.#o.log.warn('skipping malformed object', { kind: this.#o.info.kind, error: errorMessage(e) });
      return undefined;
    }
  }

  async #watch(): Promise<void> {
    if (this.#closed) return;
    const { info, log } = this.#o;
    const startedAt = this.#o.clock.now();
    let gotEvent = false;
    let expired = false;
    let finished = false;

    const onEvent = (type: string, obj: unknown): void => {
      if (this.#closed || finished) return;
      // The library swallows exceptions thrown here; catch so none goes unseen.
      try {
        if (type === 'ERROR') {
          const st = (obj ?? {}) as WatchEventStatus;
          if (st.code === 410) {
            expired = true;
            // kube-apiserver ends the stream after this; do not rely on every server doing so.
            this.#abort?.abort();
          } else log.warn('watch ERROR event', { kind: info.kind, code: st.code, reason: st.reason, message: st.message });
          return;
        }
        const rv = (obj as { metadata?: { resourceVersion?: unknown } } | null)?.metadata?.resourceVersion;
        if (type === 'ADDED' || type === 'MODIFIED') {
          const k = this.#convert(obj);
          if (k !== undefined) this.#o.sink.upsert(k);
        } else if (type === 'DELETED') {
          const k = this.#convert(obj);
          if (k !== undefined) this.#o.sink.remove(info.kind, k.metadata.namespace, k.metadata.name);
        } else if (type !== 'BOOKMARK') {
          log.warn('unknown watch event type', { kind: info.kind, type });
          return;
        }
        gotEvent = true;
        if (typeof rv === 'string' && rv !== '') this.#rv = rv;
      } catch (e) {
        log.error('applying watch event failed', { kind: info.kind, type, error: errorMessage(e) });
      }
    };

    const onDone = (err: unknown): void => {
      if (finished) return;
      finished = true;
      this.#abort = undefined;
      if (this.#closed) return;
      const status = httpStatus(err);
      if (status === 410) expired = true;
      const healthy = gotEvent || this.#o.clock.now() - startedAt >= this.#o.healthyWatchMs;
      if (healthy) this.#attempt = 0;
      const delay = healthy ? 0 : backoffDelay(this.#attempt++, this.#o.backoff, this.#o.random);
      const reason = expired ? 'expired' : err === null || err === undefined ? 'closed' : (err as { name?: unknown }).name === 'TimeoutError' ? 'timeout' : 'error';
      this.#o.onRestart(reason);
      const fields = { kind: info.kind, reason, resourceVersion: this.#rv, retryMs: delay, ...(err !== null && err !== undefined ? { error: errorMessage(err) } : {}) };
      if (reason === 'error' || reason === 'expired') log.warn('watch ended; restarting', fields);
      else log.debug('watch ended; restarting', fields);
      if (expired) {
        // Our resourceVersion is older than what the server keeps: only a fresh list is safe.
        this.#rv = '';
        this.#schedule(delay, 'list');
      } else {
        this.#schedule(delay, 'watch');
      }
    };

    // Server-side timeouts spread over 5–10 min, as client-go does, so watches do not all
    // expire together.
    const timeoutSeconds = Math.floor(300 + 300 * this.#o.random());
    try {
      const ctrl = await this.#o.watch.watch(info.path, { resourceVersion: this.#rv, allowWatchBookmarks: true, timeoutSeconds }, onEvent, onDone);
      if (this.#closed || finished) ctrl.abort();
      else this.#abort = ctrl;
    } catch (e) {
      // Raised before any request was made (no cluster, auth plugin failure).
      onDone(e);
    }
  }
}

function describeListError(e: unknown, status: number | undefined, info: KindInfo, server: string): string {
  if (status === 401) return `list ${info.path} on ${server} was refused (401): is the controller's token valid?`;
  if (status === 403) return `list ${info.path} on ${server} is forbidden (403): does the controller's ServiceAccount have list/watch on ${info.kind} (ClusterRole in daemonset/)?`;
  if (status === 404) return `list ${info.path} on ${server} not found (404): is this a Kubernetes API server of a supported version?`;
  if (status !== undefined) return `list ${info.path} on ${server} failed with HTTP ${status}: ${errorMessage(e)}`;
  return `cannot list ${info.path} on ${server}: ${errorMessage(e)} (is the API server reachable from the controller?)`;
}

/** Raised by KubernetesSource.start() when the first list of some kind does not arrive in time. */
export class KubeSyncError extends RondoError {
  constructor(message: string) {
    super('RONDO_E_KUBE_SYNC', message);
    this.name = 'KubeSyncError';
  }
}
