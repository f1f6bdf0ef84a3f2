/**
 * Load balancing over a service's endpoints, for the node agent (per connection) and the
 * waypoint (per request): power-of-two-choices least-load, with round robin while there is
 * no load signal (every candidate idle), which is the common case for short
 * request-per-connection traffic.
 *
 * Load is what is open to an endpoint now: connections (acquire/release) plus requests in
 * flight (startRequest). A proxy counts whichever it has; a waypoint multiplexing many
 * requests over one pooled HBONE connection counts requests.
 *
 * Eligibility: an `eligible` hook (outlier ejection, draining) removes endpoints from the
 * choice. When it removes every candidate the picker chooses among all of them anyway, as
 * Envoy's panic threshold does: an ejection must not turn a degraded service into an outage.
 */

/** Key the picker counts load under: the final target `ip:port` (IPv6 in brackets). */
export function endpointKey(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** Options of EndpointPicker. */
export interface EndpointPickerOptions {
  /** Returns a float in [0, 1); injected by tests. */
  random?: () => number;
  /**
   * False for an endpoint that must not get new traffic now (ejected by outlier detection,
   * draining). Called with candidate keys on every pick, so it must be cheap (a Set lookup).
   */
  eligible?: (key: string) => boolean;
}

/** P2C least-load endpoint chooser with per-target connection and request counts. */
export class EndpointPicker {
  readonly #connections = new Map<string, number>();
  readonly #requests = new Map<string, number>();
  readonly #cursor = new Map<string, number>();
  readonly #random: () => number;
  readonly #eligible: ((key: string) => boolean) | undefined;

  constructor(o: EndpointPickerOptions = {}) {
    this.#random = o.random ?? Math.random;
    this.#eligible = o.eligible;
  }

  /**
   * Chooses one of `keys` (endpoint keys, see endpointKey) for the pool `poolKey` (a service
   * key plus port); returns its index in `keys`, or -1 when `keys` is empty.
   */
  pick(poolKey: string, keys: readonly string[]): number {
    const n = keys.length;
    if (n === 0) return -1;
    const eligible = this.#eligible;
    if (eligible !== undefined) {
      let allowed: number[] | undefined;
      for (let i = 0; i < n; i++) {
        if (eligible(keys[i]!)) {
          if (allowed !== undefined) allowed.push(i);
        } else if (allowed === undefined) {
          // First excluded key: from here on, collect the indexes that remain.
          allowed = [];
          for (let j = 0; j < i; j++) allowed.push(j);
        }
      }
      if (allowed !== undefined && allowed.length > 0) {
        return allowed[this.#choose(poolKey, allowed.length, (i) => keys[allowed[i]!]!)]!;
      }
      // Nothing excluded, or everything excluded (panic): choose among all.
    }
    return this.#choose(poolKey, n, (i) => keys[i]!);
  }

  #choose(poolKey: string, n: number, keyAt: (i: number) => string): number {
    if (n === 1) return 0;
    let busy = false;
    for (let i = 0; i < n; i++) {
      if (this.load(keyAt(i)) > 0) {
        busy = true;
        break;
      }
    }
    if (!busy) {
      const c = this.#cursor.get(poolKey) ?? 0;
      this.#cursor.set(poolKey, (c + 1) % n);
      return c % n;
    }
    const a = Math.floor(this.#random() * n) % n;
    // Second choice distinct from the first, uniformly among the other n-1.
    let b = Math.floor(this.#random() * (n - 1)) % (n - 1);
    if (b >= a) b++;
    return this.load(keyAt(b)) < this.load(keyAt(a)) ? b : a;
  }

  /** Counts one more open connection to `key`; call when the connection to it opens. */
  acquire(key: string): void {
    inc(this.#connections, key);
  }

  /** Counts one fewer open connection to `key`; extra releases are ignored. */
  release(key: string): void {
    dec(this.#connections, key);
  }

  /**
   * Counts one request in flight to `key` and returns the function that ends it (call it
   * once the response is complete or failed; later calls do nothing).
   */
  startRequest(key: string): () => void {
    inc(this.#requests, key);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      dec(this.#requests, key);
    };
  }

  /** Open connections counted for `key`. */
  active(key: string): number {
    return this.#connections.get(key) ?? 0;
  }

  /** Requests in flight counted for `key`. */
  inFlight(key: string): number {
    return this.#requests.get(key) ?? 0;
  }

  /** What P2C compares: open connections plus requests in flight. */
  load(key: string): number {
    return (this.#connections.get(key) ?? 0) + (this.#requests.get(key) ?? 0);
  }

  /** Forgets round-robin cursors of pools that no longer exist (call on config change). */
  retainPools(poolKeys: ReadonlySet<string>): void {
    for (const k of this.#cursor.keys()) if (!poolKeys.has(k)) this.#cursor.delete(k);
  }
}

function inc(m: Map<string, number>, key: string): void {
  m.set(key, (m.get(key) ?? 0) + 1);
}

function dec(m: Map<string, number>, key: string): void {
  const n = (m.get(key) ?? 0) - 1;
  // Deleting at zero keeps the map bounded by targets with live load.
  if (n <= 0) m.delete(key);
  else m.set(key, n);
}
