/** Jittered exponential backoff for reconnect and retry loops. */

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

/**
 * "Full jitter" backoff: each delay is uniform in [base/2, base], base doubling per attempt,
 * so a fleet of proxies reconnecting after a controller restart spreads out instead of
 * arriving in lockstep.
 */
export class Backoff {
  readonly #initial: number;
  readonly #max: number;
  readonly #factor: number;
  readonly #random: () => number;
  #attempt = 0;

  constructor(o: BackoffOptions = {}) {
    this.#initial = o.initialMs ?? 200;
    this.#max = o.maxMs ?? 30_000;
    this.#factor = o.factor ?? 2;
    this.#random = o.random ?? Math.random;
  }

  /** Delay before the next attempt, in ms; grows until reset(). */
  next(): number {
    const base = Math.min(this.#max, this.#initial * this.#factor ** this.#attempt);
    this.#attempt++;
    return Math.round(base / 2 + (base / 2) * this.#random());
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
