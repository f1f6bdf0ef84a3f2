/** Aggregates per-request outcomes of the load client into the JSON summary it prints. */

/** One finished request: a status (HTTP code, or grpc-status for gRPC) and who answered. */
export interface Outcome { status: string; pod?: string | undefined; version?: string | undefined; latencyMs: number }

/** The client command's printed result. */
export interface ClientSummary {
  url: string;
  mode: 'http1' | 'h2c' | 'grpc';
  requests: number;
  completed: number;
  /** HTTP status (or grpc-status in grpc mode) -> count. */
  statuses: Record<string, number>;
  /** x-rondo-pod of the answer -> count; which backend pods served the load. */
  pods: Record<string, number>;
  versions: Record<string, number>;
  /** Error (code or message) -> count, for requests that got no answer at all. */
  errors: Record<string, number>;
  latencyMs: { p50: number; p90: number; p99: number; max: number; mean: number };
  durationMs: number;
  rps: number;
}

/** The p-th percentile (0..100) of ascending values, nearest-rank; 0 for none. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

const round = (ms: number): number => Math.round(ms * 1000) / 1000;
const bump = (m: Record<string, number>, k: string): void => { m[k] = (m[k] ?? 0) + 1; };

/** Collects outcomes and errors; `build()` computes the summary. */
export class SummaryBuilder {
  readonly #latencies: number[] = [];
  readonly #statuses: Record<string, number> = {};
  readonly #pods: Record<string, number> = {};
  readonly #versions: Record<string, number> = {};
  readonly #errors: Record<string, number> = {};

  /** Records an answered request. */
  ok(o: Outcome): void {
    this.#latencies.push(o.latencyMs);
    bump(this.#statuses, o.status);
    if (o.pod !== undefined) bump(this.#pods, o.pod);
    if (o.version !== undefined) bump(this.#versions, o.version);
  }

  /** Records a request that got no answer, under its root cause (an HTTP/2 stream cancelled because its session failed counts as the session's error). */
  error(err: unknown): void {
    let e = err;
    while (e instanceof Error && e.cause instanceof Error) e = e.cause;
    const code = (e as { code?: unknown } | null)?.code;
    bump(this.#errors, typeof code === 'string' ? code : e instanceof Error ? e.message : String(e));
  }

  /** Computes percentiles and rates. */
  build(head: { url: string; mode: ClientSummary['mode']; requests: number }, durationMs: number): ClientSummary {
    const l = [...this.#latencies].sort((a, b) => a - b);
    const sum = l.reduce((a, b) => a + b, 0);
    return {
      ...head,
      completed: l.length,
      statuses: this.#statuses,
      pods: this.#pods,
      versions: this.#versions,
      errors: this.#errors,
      latencyMs: {
        p50: round(percentile(l, 50)), p90: round(percentile(l, 90)), p99: round(percentile(l, 99)),
        max: round(l.at(-1) ?? 0), mean: round(l.length === 0 ? 0 : sum / l.length),
      },
      durationMs: round(durationMs),
      rps: durationMs > 0 ? Math.round((l.length / durationMs) * 1000 * 10) / 10 : 0,
    };
  }
}
