/**
 * The Kubernetes source: one list-then-watch reflector per watched kind, all writing plain
 * objects into the shared ResourceSink, with restart and re-list counters.
 */
import { KubeConfig, Watch } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import type { Logger } from '../../common/log.ts';
import { realClock } from '../../common/clock.ts';
import type { Clock, TimerHandle } from '../../common/clock.ts';
import { KIND_INFO } from './kubernetes-kinds.ts';
import { KindReflector, KubeSyncError } from './kubernetes-reflector.ts';
import type { BackoffSettings } from '../../common/backoff.ts';
import { WATCHED_KINDS } from './types.ts';
import { sourceMetrics } from './source-metrics.ts';
import type { ResourceSink, Source, WatchedKind } from './types.ts';

/** Options of the Kubernetes source; everything but kubeConfig/sink/log has a production default. */
export interface KubernetesSourceOptions {
  kubeConfig: KubeConfig;
  sink: ResourceSink;
  log: Logger;
  /**
   * Gets `rondo_controller_watch_restarts_total{source="kubernetes",kind}` and
   * `rondo_controller_relists_total{source,kind}`, shared with the controller's metrics when
   * given its registry (see sources/source-metrics.ts).
   */
  registry?: Registry;
  /** Called on every watch restart, e.g. to feed a controller-wide counter. */
  onWatchRestart?: (kind: WatchedKind, reason: string) => void;
  /** Kinds to watch (default: every WATCHED_KINDS entry). */
  kinds?: readonly WatchedKind[];
  /** List page size (default 500, as client-go). */
  pageSize?: number;
  /** Retry pacing for failed lists and watches (default 500 ms doubling to 30 s, jittered). */
  backoff?: Partial<BackoffSettings>;
  /** How often a kind whose CRD is missing is listed again (default 60 s). */
  missingKindRetryMs?: number;
  /** A watch lasting this long counts as healthy (default 1 s). */
  healthyWatchMs?: number;
  /** start() fails after this long without every kind's first list (default 120 s). */
  startTimeoutMs?: number;
  random?: () => number;
  /** Retry, re-list and start-up timers (default the real clock). */
  clock?: Clock;
}

/** Loads a kubeconfig: the given file, else in-cluster service account, else ~/.kube/config. */
export function loadKubeConfig(file?: string): KubeConfig {
  const kc = new KubeConfig();
  if (file !== undefined) kc.loadFromFile(file);
  else kc.loadFromDefault();
  return kc;
}

/** Feeds the store from a Kubernetes API server through list/watch. */
export class KubernetesSource implements Source {
  readonly #o: KubernetesSourceOptions;
  readonly #reflectors: KindReflector[] = [];
  #started: Promise<void> | undefined;
  #closed: Promise<void> | undefined;
  readonly #clock: Clock;
  #startTimer: TimerHandle | undefined;
  #failStart: ((e: Error) => void) | undefined;

  constructor(o: KubernetesSourceOptions) {
    this.#o = o;
    this.#clock = o.clock ?? realClock;
    const registry = o.registry ?? new Registry();
    const { watchRestarts: restarts, relists } = sourceMetrics(registry);
    const server = o.kubeConfig.getCurrentCluster()?.server ?? '(no current cluster in kubeconfig)';
    const watch = new Watch(o.kubeConfig);
    const log = o.log.child('kubernetes');
    for (const kind of o.kinds ?? WATCHED_KINDS) {
      const info = KIND_INFO[kind];
      // Zero series up front so dashboards and alerts see every kind from the start.
      restarts.inc({ source: 'kubernetes', kind }, 0);
      relists.inc({ source: 'kubernetes', kind }, 0);
      this.#reflectors.push(new KindReflector({
        info,
        list: info.makeList(o.kubeConfig),
        watch,
        sink: o.sink,
        log,
        server,
        pageSize: o.pageSize ?? 500,
        backoff: { initialMs: o.backoff?.initialMs ?? 500, maxMs: o.backoff?.maxMs ?? 30_000 },
        missingRetryMs: o.missingKindRetryMs ?? 60_000,
        healthyWatchMs: o.healthyWatchMs ?? 1000,
        random: o.random ?? Math.random,
        clock: this.#clock,
        onRestart: (reason) => {
          restarts.inc({ source: 'kubernetes', kind });
          o.onWatchRestart?.(kind, reason);
        },
        onRelist: () => relists.inc({ source: 'kubernetes', kind }),
      }));
    }
  }

  /** Resolves once every kind's first list is in the sink; rejects with KubeSyncError on timeout. */
  start(): Promise<void> {
    this.#started ??= this.#start();
    return this.#started;
  }

  async #start(): Promise<void> {
    const all = Promise.all(this.#reflectors.map((r) => r.start()));
    const limit = this.#o.startTimeoutMs ?? 120_000;
    const timeout = new Promise<never>((_, reject) => {
      this.#failStart = reject;
      this.#startTimer = this.#clock.setTimeout(() => {
        const pending = this.#reflectors.filter((r) => !r.synced).map((r) => `${r.kind}${r.lastError !== undefined ? ` (${r.lastError})` : ''}`);
        reject(new KubeSyncError(`no first list from the Kubernetes API after ${limit} ms for: ${pending.join('; ')}`));
      }, limit);
    });
    try {
      await Promise.race([all, timeout]);
      this.#o.log.info('kubernetes source synced', { kinds: this.#reflectors.length });
    } finally {
      this.#clock.clearTimeout(this.#startTimer);
      this.#failStart = undefined;
    }
  }

  /** Stops every reflector; no request is made after it resolves. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#clock.clearTimeout(this.#startTimer);
      this.#failStart?.(new KubeSyncError('the Kubernetes source was closed before every kind was listed'));
      await Promise.all(this.#reflectors.map((r) => r.close()));
    })();
    return this.#closed;
  }
}
