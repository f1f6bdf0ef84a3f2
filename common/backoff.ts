/**
 * Jittered exponential backoff for reconnect and retry loops: the one formula every retry in
 * Rondo uses (push reconnects, Kubernetes list/watch, certificate renewals, ...).
 */

/** Pacing of one retry loop. */
export interface BackoffSettings {
  /** First delay in ms. */
  initialMs: number;
  /** Ceiling in ms. */
  maxMs: number;
  /** Growth per attempt (default 2). */
  factor?: number;
}

/**
 * Delay before retry number `attempt` (0-based), in ms: the base grows by `factor` per
 * attempt up to `maxMs`, and the delay is uniform in [base/2, base] ("equal jitter"), so a
 * fleet of proxies or controllers restarted together spreads out instead of retrying in
 * lockstep, while a retry never comes sooner than half its base.
 */
export function backoffDelay(attempt: number, s: BackoffSettings, random: () => number = Math.random): number {
  // Capping the exponent keeps the product finite for loops that have failed for days.
  const base = Math.min(s.maxMs, s.initialMs * (s.factor ?? 2) ** Math.min(Math.max(0, attempt), 64));
  return Math.round(base / 2 + (base / 2) * random());
}

/** Options of Backoff. */
export interface BackoffOptions {
  /** First delay in ms (default 200). */
  initialMs?: number;
  /** Ceiling in ms (default 30 000). */
  maxMs?: number;
  /** Growth per attempt (default 2). */
  factor?: number;
  /** Random source in [0, 1); injected by tests. */
  random?: () => number;
}

/** backoffDelay with the attempt count kept: next() after each failure, reset() after a success. */
export class Backoff {
  readonly #settings: BackoffSettings;
  readonly #random: () => number;
  #attempt = 0;

  constructor(o: BackoffOptions = {}) {
    this.#settings = { initialMs: o.initialMs ?? 200, maxMs: o.maxMs ?? 30_000, factor: o.factor ?? 2 };
    this.#random = o.random ?? Math.random;
  }

  /** Delay before the next attempt, in ms; grows until reset(). */
  next(): number {
    return backoffDelay(this.#attempt++, this.#settings, this.#random);
  }

  /** Number of delays handed out since the last reset. */
  get attempts(): number {
    return this.#attempt;
  }

  /** Starts again from the initial delay (after a success). */
  reset(): void {
    this.#attempt = 0;
  }
}
