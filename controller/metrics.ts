/** The controller's Prometheus metrics (served on :15014/metrics). */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { collectProcessMetrics } from '../common/process-metrics.ts';
import { sourceMetrics } from './sources/source-metrics.ts';

/** Every metric the controller exports, on one registry. */
export interface ControllerMetrics {
  readonly registry: Registry;
  readonly connectedProxies: Gauge<'kind'>;
  readonly pushes: Counter<'type'>;
  readonly pushBytes: Counter<'encoding'>;
  readonly pushLatency: Histogram;
  readonly acks: Counter;
  readonly nacks: Counter<'type'>;
  readonly coalesced: Counter;
  readonly invalidMessages: Counter<'reason'>;
  readonly authFailures: Counter;
  readonly csrs: Counter<'result'>;
  /** Shared with the sources on the same registry (sources/source-metrics.ts). */
  readonly watchRestarts: Counter<'source' | 'kind'>;
  readonly invalidResources: Gauge<'kind'>;
  readonly statusWrites: Counter<'result'>;
  readonly buildSeconds: Histogram;
  readonly configVersion: Gauge;
}

/** Creates the metrics on a fresh registry (or the one given). */
export function createControllerMetrics(o: { registry?: Registry; defaults?: boolean } = {}): ControllerMetrics {
  const registry = o.registry ?? new Registry();
  const registers = [registry];
  if (o.defaults ?? false) collectProcessMetrics(registry, 'rondo_controller_');
  return {
    registry,
    connectedProxies: new Gauge({ name: 'rondo_controller_connected_proxies', help: 'Proxies connected to the push server', labelNames: ['kind'], registers }),
    pushes: new Counter({ name: 'rondo_controller_pushes_total', help: 'Snapshots and deltas sent', labelNames: ['type'], registers }),
    pushBytes: new Counter({ name: 'rondo_controller_push_bytes_total', help: 'Bytes of snapshots and deltas sent, by frame encoding (deflate: shared compressed binary frames)', labelNames: ['encoding'], registers }),
    pushLatency: new Histogram({
      name: 'rondo_controller_push_latency_seconds',
      help: 'From a config change (version published) to the proxy ACK/NACK',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    acks: new Counter({ name: 'rondo_controller_acks_total', help: 'ACKs received', registers }),
    nacks: new Counter({ name: 'rondo_controller_nacked_resources_total', help: 'Resources rejected by proxies', labelNames: ['type'], registers }),
    coalesced: new Counter({ name: 'rondo_controller_coalesced_versions_total', help: 'Versions skipped for a slow proxy (replaced by a newer one)', registers }),
    invalidMessages: new Counter({ name: 'rondo_controller_invalid_messages_total', help: 'Malformed or oversized proxy messages (connection closed)', labelNames: ['reason'], registers }),
    authFailures: new Counter({ name: 'rondo_controller_auth_failures_total', help: 'Push connections refused at authentication or hello', registers }),
    csrs: new Counter({ name: 'rondo_controller_csrs_total', help: 'CSRs handled', labelNames: ['result'], registers }),
    watchRestarts: sourceMetrics(registry).watchRestarts,
    invalidResources: new Gauge({ name: 'rondo_controller_invalid_resources', help: 'Resources currently left out as invalid', labelNames: ['kind'], registers }),
    statusWrites: new Counter({ name: 'rondo_controller_status_writes_total', help: 'Status condition patches sent to the Kubernetes API', labelNames: ['result'], registers }),
    buildSeconds: new Histogram({ name: 'rondo_controller_build_seconds', help: 'Model build time per version', buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers }),
    configVersion: new Gauge({ name: 'rondo_controller_config_version', help: 'Latest published config version', registers }),
  };
}
