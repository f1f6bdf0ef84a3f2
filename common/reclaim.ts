/**
 * Gives memory back after a burst of traffic, once a proxy process (the node agent's primary
 * or a data-path worker; the waypoint's too) has gone quiet.
 *
 * V8 collects the old generation only when it reaches a limit that grows to a few times the
 * live heap. After a load, an agent holding ~18 MB of live objects kept ~72 MB of old-space
 * garbage, and with it ~160 MB of RSS, for as long as it stayed quiet: nothing allocates, so
 * no GC ever runs (V8's memory reducer only starts after a major GC). One major GC once the
 * process is idle returned it all (RSS 162 → 88 MB), and `malloc_trim` hands freed malloc
 * pages (OpenSSL, nghttp2, libuv) back to the kernel (another ~9 MB). docs/performance.md.
 *
 * Idle means the process used under 2 % of a core on average over the last `quietChecks`
 * checks (a sliding window, so V8's own short GC work in between does not restart the wait);
 * a GC runs only when RSS grew by `minGrowthBytes` since the last one, so a steady quiet
 * agent never GCs. RSS, not the V8 heap: after a bulk transfer most of the garbage is outside
 * it (~39 MB of unreachable Buffers' memory in malloc with a 12 MB heap). The check is one `process.cpuUsage()` and one heap-statistics read per
 * second.
 */
import { Session } from 'node:inspector/promises';
import { getHeapStatistics } from 'node:v8';
import type { Logger } from './log.ts';
import { errorMessage } from './errors.ts';
import { realClock } from './clock.ts';
import type { Clock, TimerHandle } from './clock.ts';
import { libcFunction } from './libc.ts';

/** What the reclaimer acts on; injectable for tests. */
export interface ReclaimHooks {
  /** CPU microseconds the process has used so far */
  cpuMicros(): number;
  /** resident set size now, in bytes */
  rss(): number;
  /** bytes of live-or-garbage V8 heap now (for the log) */
  heapUsed(): number;
  /** a full, memory-reducing garbage collection */
  gc(): Promise<void>;
  /** returns freed malloc memory to the kernel (no-op where unavailable) */
  trim(): void;
}

export interface IdleReclaimerOptions {
  log: Logger;
  hooks?: ReclaimHooks;
  /** how often the process is looked at */
  checkMs?: number;
  /** checks in the window whose average CPU must be quiet (default 30: `--idle-reclaim-s`) */
  quietChecks?: number;
  /** share of one core under which a check counts as quiet */
  quietCpuShare?: number;
  /** RSS growth since the last reclaim that makes one worthwhile */
  minGrowthBytes?: number;
  /** timers (default the real clock) */
  clock?: Clock;
}

/**
 * A memory-reducing full GC: the inspector's `HeapProfiler.collectGarbage` (V8's
 * LowMemoryNotification, over an in-process session: no port is opened). Unlike a plain major
 * GC (`gc({ type: 'major' })`, which left ~20 MB more RSS in the lab) it also shrinks the young
 * generation and releases freed pages. ~14 ms for 60 MB of garbage, on an idle loop.
 */
function lowMemoryGc(): () => Promise<void> {
  return async () => {
    const session = new Session();
    session.connect();
    try {
      await session.post('HeapProfiler.collectGarbage');
    } finally {
      session.disconnect();
    }
  };
}

/** glibc's malloc_trim(0) (koffi, already loaded for SO_ORIGINAL_DST); a no-op where unavailable. */
function mallocTrim(log: Logger): () => void {
  try {
    const trim = libcFunction<(pad: number) => number>('int malloc_trim(size_t pad)');
    return () => { trim(0); };
  } catch (e) {
    log.info('malloc_trim unavailable; only the V8 heap is reclaimed when idle', { error: errorMessage(e) });
    return () => undefined;
  }
}

/** The real hooks: this process's CPU time, V8 heap, GC and glibc. */
export function processHooks(log: Logger): ReclaimHooks {
  const gc = lowMemoryGc();
  const trim = mallocTrim(log);
  return {
    cpuMicros: () => { const u = process.cpuUsage(); return u.user + u.system; },
    rss: () => process.memoryUsage.rss(),
    heapUsed: () => getHeapStatistics().used_heap_size,
    gc,
    trim,
  };
}

const mb = (bytes: number): number => Math.round((bytes / 1048576) * 10) / 10;

/** Runs a memory-reducing GC and malloc_trim once the process goes quiet after its RSS has grown. */
export class IdleReclaimer {
  readonly #o: Required<Omit<IdleReclaimerOptions, 'hooks' | 'clock'>>;
  readonly #hooks: ReclaimHooks;
  readonly #clock: Clock;
  #timer: TimerHandle | undefined;
  #lastCpu: number;
  /** CPU µs of the last `quietChecks` checks (a ring) */
  readonly #window: number[] = [];
  #next = 0;
  #baseline: number;
  #running = false;
  /** reclaims done so far */
  runs = 0;

  constructor(o: IdleReclaimerOptions) {
    this.#o = { log: o.log, checkMs: o.checkMs ?? 1000, quietChecks: o.quietChecks ?? 30, quietCpuShare: o.quietCpuShare ?? 0.02, minGrowthBytes: o.minGrowthBytes ?? 8 * 1024 * 1024 };
    this.#hooks = o.hooks ?? processHooks(o.log);
    this.#clock = o.clock ?? realClock;
    this.#lastCpu = this.#hooks.cpuMicros();
    // Start-up garbage (module loading, the first config) counts as growth.
    this.#baseline = 0;
  }

  start(): this {
    // Unref'd: the reclaimer alone must not keep a stopping agent alive.
    this.#timer ??= this.#clock.setInterval(() => { void this.check(); }, this.#o.checkMs).unref();
    return this;
  }

  stop(): void {
    this.#clock.clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** One look at the process (the timer calls this; tests call it directly). */
  async check(): Promise<void> {
    const cpu = this.#hooks.cpuMicros();
    const used = cpu - this.#lastCpu;
    this.#lastCpu = cpu;
    const n = this.#o.quietChecks;
    if (this.#window.length < n) this.#window.push(used);
    else this.#window[this.#next] = used;
    this.#next = (this.#next + 1) % n;
    if (this.#window.length < n || this.#running) return;
    const sum = this.#window.reduce((a, b) => a + b, 0);
    if (sum >= this.#o.quietCpuShare * this.#o.checkMs * 1000 * n) return;
    const rss = this.#hooks.rss();
    if (rss - this.#baseline < this.#o.minGrowthBytes) return;
    const heap = this.#hooks.heapUsed();
    this.#running = true;
    try {
      await this.#hooks.gc();
      this.#hooks.trim();
      const rssAfter = this.#hooks.rss();
      this.#baseline = rssAfter;
      this.runs++;
      this.#o.log.info('idle: returned memory', { rssBeforeMB: mb(rss), rssAfterMB: mb(rssAfter), heapBeforeMB: mb(heap), heapAfterMB: mb(this.#hooks.heapUsed()) });
    } catch (e) {
      this.#o.log.warn('idle memory reclaim failed', { error: errorMessage(e) });
    } finally {
      this.#running = false;
      // The GC's own CPU time must not count as activity for the next check.
      this.#lastCpu = this.#hooks.cpuMicros();
    }
  }
}
