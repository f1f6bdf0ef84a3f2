/**
 * The sources' own counters, shared by every source on one registry: one
 * `rondo_controller_watch_restarts_total{source, kind}` whoever creates it first (the
 * controller's metrics or a Kubernetes source), so the two never clash over label names.
 */
import { Counter } from 'prom-client';
import type { Registry } from 'prom-client';
import { RondoError } from '../../common/errors.ts';

/** Counters a source increments; `source` is `kubernetes` or `files`, `kind` the watched kind or `*`. */
export interface SourceMetrics {
  readonly watchRestarts: Counter<'source' | 'kind'>;
  readonly relists: Counter<'source' | 'kind'>;
}

/** Metric names, for tests and dashboards. */
export const SOURCE_METRIC_NAMES = {
  watchRestarts: 'rondo_controller_watch_restarts_total',
  relists: 'rondo_controller_relists_total',
} as const;

const byRegistry = new WeakMap<Registry, SourceMetrics>();

/**
 * The source counters on `registry`, created on first use and shared afterwards. A registry
 * that already holds a metric of those names from elsewhere (labels unknown) is refused.
 */
export function sourceMetrics(registry: Registry): SourceMetrics {
  const known = byRegistry.get(registry);
  if (known !== undefined) return known;
  for (const name of Object.values(SOURCE_METRIC_NAMES)) {
    if (registry.getSingleMetric(name) !== undefined) {
      throw new RondoError('RONDO_E_METRIC_CONFLICT', `the metrics registry already has ${name} from outside the controller's sources; pass the controller's registry (metrics.registry) or a fresh one`);
    }
  }
  const registers = [registry];
  const m: SourceMetrics = {
    watchRestarts: new Counter({
      name: SOURCE_METRIC_NAMES.watchRestarts,
      help: 'Source watches restarted: Kubernetes watches dropped, failed, expired or timed out (source=kubernetes, by kind); the state-directory watcher (source=files, kind=*)',
      labelNames: ['source', 'kind'], registers,
    }),
    relists: new Counter({
      name: SOURCE_METRIC_NAMES.relists,
      help: 'Full re-lists after the first one (410 Gone, CRD appeared), by source and kind',
      labelNames: ['source', 'kind'], registers,
    }),
  };
  byRegistry.set(registry, m);
  return m;
}
