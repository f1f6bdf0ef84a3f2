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

/** Registers the process, heap, GC and event-loop metrics on `register`. */
export function collectProcessMetrics(register: Registry, prefix?: string): void {
  collectDefaultMetrics({ register, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS, ...(prefix !== undefined ? { prefix } : {}) });
}
