/**
 * The node agent's Prometheus metrics: the Istio-standard TCP metrics (so existing
 * dashboards work; label names and values from common/istio-labels.ts) and the agent's own
 * health. The per-connection path is cheap: each connection adds plain numbers to the
 * accumulator of its label set, which reach the prom-client counters when Prometheus
 * scrapes (long-lived connections show progress without a timer or a per-chunk update).
 *
 * Label sets are bounded (DEFAULT_MAX_TCP_LABEL_SETS): prom-client keeps every label set
 * it was ever given until the process ends, so anything that lets label values vary
 * without limit (a bug, a churn pattern, a hostile peer) would otherwise grow /metrics and
 * memory for good. Past the bound a connection is counted under its label set with every
 * workload, service and principal label `unknown` (reporter, protocol and security policy
 * kept: at most 4 such sets), and rondo_agent_tcp_label_sets_collapsed_total counts it.
 */
import { Counter, Gauge, Registry } from 'prom-client';
import { collectProcessMetrics } from '../common/process-metrics.ts';
import { RondoError, reasonLabel } from '../common/errors.ts';
import type { ErrorCode } from '../common/errors.ts';
import { TCP_LABEL_NAMES, UNKNOWN } from '../common/istio-labels.ts';
import type { TcpLabels } from '../common/istio-labels.ts';

// Per label set, what happened since the last scrape. prom-client validates and hashes all
// 10 labels on every inc(), even through a cached labels() child: 4 incs per connection were
// ~5 % of a new connection's JS. Plain additions here; the counters get them at scrape.
interface TcpSeries {
  labels: TcpLabels;
  opened: number;
  closed: number;
  sent: number;
  received: number;
}

/** Byte and lifecycle accounting for one connection; create with AgentMetrics.connection(). */
export class ConnectionMetrics {
  /** Label values this connection reports under. */
  readonly labels: Readonly<TcpLabels>;
  #closed = false;
  readonly #owner: AgentMetrics;
  readonly #series: TcpSeries;

  /** @internal use AgentMetrics.connection() */
  constructor(owner: AgentMetrics, series: TcpSeries) {
    this.#owner = owner;
    this.labels = series.labels;
    this.#series = series;
  }

  /**
   * Counts response bytes (destination -> source). Istio defines sent/received from the
   * server's side for BOTH reporters (sent = during response, received = during request),
   * so a source and a destination report of one connection show the same numbers.
   */
  addSent(n: number): void {
    if (!this.#closed) this.#series.sent += n;
  }

  /** Counts request bytes (source -> destination), Istio's received_bytes. */
  addReceived(n: number): void {
    if (!this.#closed) this.#series.received += n;
  }

  /** Kept for callers: byte counts reach the counters at every scrape already. */
  flush(): void {
    // Nothing buffered per connection any more (see TcpSeries).
  }

  /** Counts the close; later calls do nothing. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#series.closed++;
    this.#owner.forget(this);
  }
}

/**
 * Distinct istio_tcp_* label sets one registry (the primary, or one worker) accepts before it
 * collapses new ones. A set is 4 series (opened, closed, sent, received), ~1.7 KB of
 * /metrics text: at the bound /metrics is ~3.4 MB. Label values come from the pushed config
 * and verified identities, so a node's real (source, destination, service) pairs stay well
 * below it; reaching it means something varies that should not, and the collapse counter says so.
 */
export const DEFAULT_MAX_TCP_LABEL_SETS = 2000;

// The label names a collapsed set keeps: bounded values only.
const KEPT_WHEN_COLLAPSED = new Set<string>(['reporter', 'request_protocol', 'connection_security_policy']);

/** Options of AgentMetrics. */
export interface AgentMetricsOptions {
  registry?: Registry;
  /** Bound on distinct istio_tcp_* label sets (default DEFAULT_MAX_TCP_LABEL_SETS). */
  maxTcpLabelSets?: number;
  /** Wall clock in ms, injectable for tests. */
  now?: () => number;
  /**
   * Also export Node process metrics (CPU, memory, event loop lag, GC). prom-client names
   * three of its gauges `*_total`, which `promtool check metrics` flags as a lint issue.
   */
  processMetrics?: boolean;
}

/** The node agent's metrics registry and the helpers the data path calls. */
export class AgentMetrics {
  /** Registry to expose on /metrics. */
  readonly registry: Registry;
  readonly #now: () => number;
  readonly #open = new Set<ConnectionMetrics>();
  #configAppliedAt: number | undefined;

  readonly #opened: Counter<string>;
  readonly #closed: Counter<string>;
  readonly #sent: Counter<string>;
  readonly #received: Counter<string>;
  readonly #configVersion: Gauge<string>;
  readonly #pool: Gauge<string>;
  readonly #refused: Counter<string>;
  readonly #audit: Counter<string>;
  readonly #hboneRefused: Counter<string>;
  readonly #collapsed: Counter;
  readonly #maxLabelSets: number;

  constructor(o: AgentMetricsOptions = {}) {
    this.registry = o.registry ?? new Registry();
    this.#now = o.now ?? Date.now;
    this.#maxLabelSets = o.maxTcpLabelSets ?? DEFAULT_MAX_TCP_LABEL_SETS;
    if (!Number.isInteger(this.#maxLabelSets) || this.#maxLabelSets < 0) {
      throw new RondoError('RONDO_E_INVALID', `maxTcpLabelSets must be a whole number >= 0, got ${String(o.maxTcpLabelSets)}`);
    }
    const registers = [this.registry];
    const labelNames = [...TCP_LABEL_NAMES];
    const flushAll = (): void => this.flushAll();
    this.#opened = new Counter({ name: 'istio_tcp_connections_opened_total', help: 'TCP connections opened', labelNames, registers, collect: flushAll });
    this.#closed = new Counter({ name: 'istio_tcp_connections_closed_total', help: 'TCP connections closed', labelNames, registers, collect: flushAll });
    this.#sent = new Counter({ name: 'istio_tcp_sent_bytes_total', help: 'Bytes sent during TCP connections', labelNames, registers, collect: flushAll });
    this.#received = new Counter({ name: 'istio_tcp_received_bytes_total', help: 'Bytes received during TCP connections', labelNames, registers, collect: flushAll });
    const now = this.#now;
    // Before the first config the age counts from start-up, so a stale-config alert also
    // fires for an agent that never received one.
    const startedAt = now();
    const appliedAt = (): number => this.#configAppliedAt ?? startedAt;
    new Gauge({
      name: 'rondo_agent_config_age_seconds',
      help: 'Seconds since the last configuration was applied (since start-up before the first)',
      registers,
      collect() {
        this.set((now() - appliedAt()) / 1000);
      },
    });
    this.#configVersion = new Gauge({ name: 'rondo_agent_config_version', help: 'Version of the configuration being served', registers });
    this.#pool = new Gauge({
      name: 'rondo_agent_pool_connections',
      help: 'HBONE pool size: sessions (TLS connections) and streams (tunnelled connections)',
      labelNames: ['kind'],
      registers,
    });
    this.#refused = new Counter({
      name: 'rondo_agent_refused_connections_total',
      help: 'Connections the agent refused, by reason (the error code without RONDO_E_, lowercased)',
      labelNames: ['reason'],
      registers,
    });
    this.#audit = new Counter({
      name: 'rondo_agent_policy_audit_total',
      help: 'AUDIT policy matches, with the decision the connection got',
      labelNames: ['policy', 'decision'],
      registers,
    });
    // The HBONE server's reasons are a fixed set in common/hbone-server.ts (tls_handshake,
    // bad_authority, header_too_large, ...), so the label stays bounded.
    this.#hboneRefused = new Counter({
      name: 'rondo_agent_hbone_refused_total',
      help: 'Connections or CONNECT streams refused on the HBONE port, by reason',
      labelNames: ['reason'],
      registers,
    });
    this.#collapsed = new Counter({
      name: 'rondo_agent_tcp_label_sets_collapsed_total',
      help: 'Connections counted with unknown workload, service and principal labels because the istio_tcp_* label-set bound was reached',
      registers,
    });
    const series = this.#series;
    new Gauge({
      name: 'rondo_agent_tcp_label_sets',
      help: 'Distinct istio_tcp_* label sets held (bounded; collapsed sets included)',
      registers,
      collect() {
        this.set(series.size);
      },
    });
    const open = this.#open;
    new Gauge({
      name: 'rondo_agent_open_connections',
      help: 'Connections currently tracked by the agent',
      registers,
      collect() {
        this.set(open.size);
      },
    });
    this.#configVersion.set(0);
    if (o.processMetrics === true) collectProcessMetrics(this.registry);
  }

  /** Counts a connection as opened and returns its accounting object (call close() once). */
  connection(labels: TcpLabels): ConnectionMetrics {
    const series = this.#seriesOf(labels);
    series.opened++;
    const c = new ConnectionMetrics(this, series);
    this.#open.add(c);
    return c;
  }

  // One accumulator per label set, kept as long as the counters keep the set (for good).
  readonly #series = new Map<string, TcpSeries>();
  // Sets counted against the bound: all but the collapsed ones (at most 4 of those).
  #boundedSets = 0;
  #seriesOf(labels: TcpLabels): TcpSeries {
    const key = labelKey(labels);
    const s = this.#series.get(key);
    if (s !== undefined) return s;
    const collapsedForm = isCollapsed(labels);
    if (!collapsedForm) {
      if (this.#boundedSets >= this.#maxLabelSets) {
        this.#collapsed.inc();
        return this.#seriesOf(collapse(labels));
      }
      this.#boundedSets++;
    }
    const fresh: TcpSeries = { labels, opened: 0, closed: 0, sent: 0, received: 0 };
    this.#series.set(key, fresh);
    return fresh;
  }

  /** @internal called by ConnectionMetrics.close(). */
  forget(c: ConnectionMetrics): void {
    this.#open.delete(c);
  }

  /** Moves what every label set counted since the last call into the prom-client counters. */
  flushAll(): void {
    for (const s of this.#series.values()) {
      if (s.opened > 0) { this.#opened.inc(s.labels, s.opened); s.opened = 0; }
      if (s.closed > 0) { this.#closed.inc(s.labels, s.closed); s.closed = 0; }
      if (s.sent > 0) { this.#sent.inc(s.labels, s.sent); s.sent = 0; }
      if (s.received > 0) { this.#received.inc(s.labels, s.received); s.received = 0; }
    }
  }

  /** Counts one refused connection under its code (`reason` = reasonLabel(code), e.g. `policy_denied`). */
  refused(code: ErrorCode): void {
    this.#refused.inc({ reason: reasonLabel(code) });
  }

  /** Counts one refusal on the HBONE port (bad TLS, not HTTP/2, bad CONNECT, ...). */
  hboneRefused(reason: string): void {
    this.#hboneRefused.inc({ reason });
  }

  /** Counts AUDIT policy matches of one authorization decision. */
  audited(policies: readonly string[], allowed: boolean): void {
    for (const policy of policies) this.#audit.inc({ policy, decision: allowed ? 'allow' : 'deny' });
  }

  /** Records that config `version` was applied now. */
  configApplied(version: number): void {
    this.#configVersion.set(version);
    this.#configAppliedAt = this.#now();
  }

  /** Records the HBONE pool size. */
  setPool(kind: 'sessions' | 'streams', n: number): void {
    this.#pool.set({ kind }, n);
  }

  /** The exposition text, as served on /metrics. */
  exposition(): Promise<string> {
    return this.registry.metrics();
  }
}

function labelKey(labels: TcpLabels): string {
  let key = '';
  for (const n of TCP_LABEL_NAMES) key += labels[n] + '\u0000';
  return key;
}

/** The label set a connection is counted under once the bound is reached. */
function collapse(labels: TcpLabels): TcpLabels {
  const out = { ...labels };
  for (const n of TCP_LABEL_NAMES) if (!KEPT_WHEN_COLLAPSED.has(n)) out[n] = UNKNOWN;
  return out;
}

function isCollapsed(labels: TcpLabels): boolean {
  for (const n of TCP_LABEL_NAMES) if (!KEPT_WHEN_COLLAPSED.has(n) && labels[n] !== UNKNOWN) return false;
  return true;
}
