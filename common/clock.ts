/**
 * Time and timers behind one small interface, so code that waits (debounce, backoff, idle
 * close, heartbeats) is driven in tests by a ManualClock instead of being slept on.
 * Production code takes an optional `clock` and defaults to `realClock`.
 */

/** A scheduled timer; `unref()` lets the process exit while it is pending, as Node's does. */
export interface TimerHandle {
  unref(): this;
  ref(): this;
  hasRef(): boolean;
}

/** Current time and timers. */
export interface Clock {
  /** Milliseconds since the epoch (a ManualClock starts where it is told). */
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle | undefined): void;
  setInterval(fn: () => void, ms: number): TimerHandle;
  clearInterval(handle: TimerHandle | undefined): void;
}

/** The process clock: Date.now and Node's timers (whose Timeout already is a TimerHandle). */
export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout | undefined),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (h) => clearInterval(h as NodeJS.Timeout | undefined),
};

/** A timer as a ManualClock reports it. */
export interface PendingTimer {
  /** The delay it was created with (the period, for an interval). */
  delayMs: number;
  /** Milliseconds from now until it fires. */
  dueInMs: number;
  repeat: boolean;
  /** False once unref() was called on its handle. */
  refed: boolean;
}

class ManualTimer implements TimerHandle {
  readonly seq: number;
  at: number;
  readonly delayMs: number;
  readonly repeat: boolean;
  readonly fn: () => void;
  refed = true;
  constructor(seq: number, at: number, delayMs: number, repeat: boolean, fn: () => void) {
    this.seq = seq;
    this.at = at;
    this.delayMs = delayMs;
    this.repeat = repeat;
    this.fn = fn;
  }
  unref(): this { this.refed = false; return this; }
  ref(): this { this.refed = true; return this; }
  hasRef(): boolean { return this.refed; }
}

/**
 * A clock that moves only when told: `advance(ms)` fires every timer due by then, earliest
 * first (creation order on ties), each with `now()` set to its due time, including timers
 * that callbacks schedule within the window. Never sleeps.
 */
export class ManualClock implements Clock {
  #now: number;
  #seq = 0;
  readonly #timers = new Set<ManualTimer>();

  constructor(startMs = 0) {
    this.#now = startMs;
  }

  now(): number { return this.#now; }

  setTimeout(fn: () => void, ms: number): TimerHandle { return this.#add(fn, ms, false); }
  setInterval(fn: () => void, ms: number): TimerHandle { return this.#add(fn, ms, true); }
  clearTimeout(h: TimerHandle | undefined): void { if (h instanceof ManualTimer) this.#timers.delete(h); }
  clearInterval(h: TimerHandle | undefined): void { this.clearTimeout(h); }

  /** Moves time forward by `ms`, firing due timers in order. */
  advance(ms: number): void {
    if (!(ms >= 0)) throw new RangeError(`ManualClock.advance: ms must be >= 0, got ${ms}`);
    const until = this.#now + ms;
    for (let t = this.#next(until); t !== undefined; t = this.#next(until)) {
      this.#now = t.at;
      if (t.repeat) t.at += t.delayMs;
      else this.#timers.delete(t);
      t.fn();
    }
    this.#now = until;
  }

  /**
   * Like advance(), but lets promise continuations and I/O callbacks run after each timer
   * (one event-loop turn), so async code that re-arms a timer after an await keeps up.
   */
  async advanceAsync(ms: number): Promise<void> {
    if (!(ms >= 0)) throw new RangeError(`ManualClock.advanceAsync: ms must be >= 0, got ${ms}`);
    const until = this.#now + ms;
    await turn();
    for (let t = this.#next(until); t !== undefined; t = this.#next(until)) {
      this.advance(t.at - this.#now);
      await turn();
    }
    this.#now = until;
  }

  /** Timers not yet fired or cleared, in creation order. */
  pending(): PendingTimer[] {
    return [...this.#timers].map((t) => ({ delayMs: t.delayMs, dueInMs: t.at - this.#now, repeat: t.repeat, refed: t.refed }));
  }

  #add(fn: () => void, ms: number, repeat: boolean): ManualTimer {
    // As Node: a delay that is not a positive number fires on the next turn (here: advance(0) or more);
    // an interval of 0 would fire forever within one advance, so its period is at least 1 ms.
    const delay = Number.isFinite(ms) && ms > 0 ? ms : repeat ? 1 : 0;
    const t = new ManualTimer(this.#seq++, this.#now + delay, repeat ? Math.max(1, delay) : delay, repeat, fn);
    this.#timers.add(t);
    return t;
  }

  #next(until: number): ManualTimer | undefined {
    let best: ManualTimer | undefined;
    for (const t of this.#timers) {
      if (t.at > until) continue;
      if (best === undefined || t.at < best.at || (t.at === best.at && t.seq < best.seq)) best = t;
    }
    return best;
  }
}

/** One event-loop turn: pending promise jobs and I/O callbacks run before it resolves. */
function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
