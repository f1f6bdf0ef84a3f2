/**
 * Service load balancing for the node agent: power-of-two-choices least-connections over a
 * service's ready endpoints, with round robin while there is no load signal (every
 * candidate idle), which is the common case for short request-per-connection traffic.
 */

/** Key the picker counts connections under: the final target `ip:port`. */
export function endpointKey(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** Options for tests: a deterministic random source. */
export interface EndpointPickerOptions {
  /** Returns a float in [0, 1). */
  random?: () => number;
}

/** P2C least-connections endpoint chooser with per-target active connection counts. */
export class EndpointPicker {
  readonly #active = new Map<string, number>();
  readonly #cursor = new Map<string, number>();
  readonly #random: () => number;

  constructor(o: EndpointPickerOptions = {}) {
    this.#random = o.random ?? Math.random;
  }

  /**
   * Chooses one of `keys` (endpoint keys, see endpointKey) for the pool `poolKey` (a service
   * key plus port); returns its index, or -1 when `keys` is empty.
   */
  pick(poolKey: string, keys: readonly string[]): number {
    const n = keys.length;
    if (n === 0) return -1;
    if (n === 1) return 0;
    let busy = false;
    for (const k of keys) {
      if ((this.#active.get(k) ?? 0) > 0) {
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
    const la = this.#active.get(keys[a]!) ?? 0;
    const lb = this.#active.get(keys[b]!) ?? 0;
    return lb < la ? b : a;
  }

  /** Counts one more open connection to `key`; call when the connection to it opens. */
  acquire(key: string): void {
    this.#active.set(key, (this.#active.get(key) ?? 0) + 1);
  }

  /** Counts one fewer open connection to `key`; extra releases are ignored. */
  release(key: string): void {
    const n = (this.#active.get(key) ?? 0) - 1;
    // Deleting at zero keeps the map bounded by targets with live connections.
    if (n <= 0) this.#active.delete(key);
    else this.#active.set(key, n);
  }

  /** Open connections counted for `key`. */
  active(key: string): number {
    return this.#active.get(key) ?? 0;
  }

  /** Forgets round-robin cursors of pools that no longer exist (call on config change). */
  retainPools(poolKeys: ReadonlySet<string>): void {
    for (const k of this.#cursor.keys()) if (!poolKeys.has(k)) this.#cursor.delete(k);
  }
}
