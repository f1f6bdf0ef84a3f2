/** Node process metrics (prom-client's default set) as every Rondo process exports them. */
import { collectDefaultMetrics } from 'prom-client';
import type { Registry } from 'prom-client';

/**
 * Sampling period of the event-loop lag histogram (`nodejs_eventloop_lag_*`). prom-client's
 * default, 10 ms, is a timer that woke an idle agent 100 times a second (~0.5 % of a core;
 * with strace, every other syscall of an idle agent was that timer's epoll_wait). At 100 ms
 * the lag percentiles still catch every stall longer than a request.
 */
export const EVENT_LOOP_SAMPLE_MS = 100;

/**
 * prom-client's gauges named like counters (`promtool check metrics` exits 3 on them). Each is
 * the sum of the per-type gauge without the suffix (`nodejs_active_handles{type}` and so on),
 * so dropping them loses nothing: `sum(nodejs_active_handles)` is the same number, and every
 * scrape walks the handle and request lists once instead of twice.
 */
export const DROPPED_DEFAULT_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'] as const;

/** Registers the process, heap, GC and event-loop metrics on `register`. */
export function collectProcessMetrics(register: Registry, prefix?: string): void {
  collectDefaultMetrics({ register, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS, ...(prefix !== undefined ? { prefix } : {}) });
  for (const name of DROPPED_DEFAULT_METRICS) register.removeSingleMetric(`${prefix ?? ''}${name}`);
}
