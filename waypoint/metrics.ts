/**
 * The waypoint's Prometheus metrics: Istio's standard request metrics with
 * `reporter="waypoint"` (names, labels and buckets as Istio exports them, so existing
 * dashboards and Kiali read them), and the waypoint's own health counters.
 *
 * Per request: one lookup of the label set's prom-client children by a joined key (children
 * are cached, so a request costs four increments on precomputed label hashes, not fourteen
 * label validations per metric). Label values come from the verified peer identity and the
 * config, never from request headers, so the number of series is bounded by the mesh.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { collectProcessMetrics } from '../common/process-metrics.ts';
import { reasonLabel } from '../common/errors.ts';
import type { ErrorCode } from '../common/errors.ts';
import { REQUEST_LABEL_NAMES } from '../common/istio-labels.ts';
import type { RequestLabels } from '../common/istio-labels.ts';

/** Istio's request duration buckets (ms). */
export const DURATION_BUCKETS_MS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];
/** Istio's request/response size buckets (bytes): 1 .. 10^7, exponential by 10. */
export const SIZE_BUCKETS = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000];

const LABELS = [...REQUEST_LABEL_NAMES];

interface Children {
  requests: ReturnType<Counter<string>['labels']>;
  duration: ReturnType<Histogram<string>['labels']>;
  requestBytes: ReturnType<Histogram<string>['labels']>;
  responseBytes: ReturnType<Histogram<string>['labels']>;
}

/** The waypoint's metrics registry. */
export class WaypointMetrics {
  readonly registry: Registry;
  readonly #requests: Counter<string>;
  readonly #duration: Histogram<string>;
  readonly #requestBytes: Histogram<string>;
  readonly #responseBytes: Histogram<string>;
  readonly #refused: Counter<'reason'>;
  readonly #version: Gauge;
  readonly #upstreamErrors: Counter<'reason'>;
  readonly #children = new Map<string, Children>();

  constructor(o: { registry?: Registry; processMetrics?: boolean } = {}) {
    this.registry = o.registry ?? new Registry();
    const registers = [this.registry];
    this.#requests = new Counter({ name: 'istio_requests_total', help: 'Requests handled by the waypoint (Istio standard metric).', labelNames: LABELS, registers });
    this.#duration = new Histogram({ name: 'istio_request_duration_milliseconds', help: 'Request duration until the response ended, in milliseconds (Istio standard metric).', labelNames: LABELS, buckets: DURATION_BUCKETS_MS, registers });
    this.#requestBytes = new Histogram({ name: 'istio_request_bytes', help: 'Request body sizes in bytes (Istio standard metric).', labelNames: LABELS, buckets: SIZE_BUCKETS, registers });
    this.#responseBytes = new Histogram({ name: 'istio_response_bytes', help: 'Response body sizes in bytes (Istio standard metric).', labelNames: LABELS, buckets: SIZE_BUCKETS, registers });
    this.#refused = new Counter({ name: 'rondo_waypoint_refused_tunnels_total', help: 'HBONE tunnels the waypoint refused, by reason.', labelNames: ['reason'], registers });
    this.#upstreamErrors = new Counter({ name: 'rondo_waypoint_upstream_errors_total', help: 'Upstream attempts that failed before a response, by reason.', labelNames: ['reason'], registers });
    this.#version = new Gauge({ name: 'rondo_waypoint_config_version', help: 'Version of the config the waypoint serves.', registers });
    if (o.processMetrics === true) collectProcessMetrics(this.registry);
  }

  /** Records one finished request. */
  request(labels: RequestLabels, durationMs: number, requestBytes: number, responseBytes: number): void {
    let key = '';
    for (const n of LABELS) key += labels[n] + '\u0000';
    let c = this.#children.get(key);
    if (c === undefined) {
      c = {
        requests: this.#requests.labels(labels),
        duration: this.#duration.labels(labels),
        requestBytes: this.#requestBytes.labels(labels),
        responseBytes: this.#responseBytes.labels(labels),
      };
      this.#children.set(key, c);
    }
    c.requests.inc();
    c.duration.observe(durationMs);
    c.requestBytes.observe(requestBytes);
    c.responseBytes.observe(responseBytes);
  }

  /** Counts a refused tunnel. */
  refused(reason: string): void {
    this.#refused.inc({ reason });
  }

  /** Counts an upstream attempt that failed before a response. */
  upstreamError(code: ErrorCode): void {
    this.#upstreamErrors.inc({ reason: reasonLabel(code) });
  }

  /** The served config version. */
  configApplied(version: number): void {
    this.#version.set(version);
  }
}
