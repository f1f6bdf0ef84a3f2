/** Fixed-size response bodies for benchmarks, built once per size so the hot path allocates nothing. */
import { InvalidInputError } from '../../common/errors.ts';

/** Largest body `/bytes/N` or `--body-bytes` serves. */
export const MAX_BODY_BYTES = 64 * 1024 * 1024;
// Bodies up to this size are kept; bigger ones are rare (bulk tests) and not worth pinning.
const CACHE_LIMIT = 1024 * 1024;
const cache = new Map<number, Buffer>();

/** Returns a body of exactly n bytes of ASCII 'x' (readable in curl output, compressible by nobody). */
export function fixedBody(n: number): Buffer {
  if (!Number.isInteger(n) || n < 0 || n > MAX_BODY_BYTES) {
    throw new InvalidInputError(`body size must be a whole number of bytes between 0 and ${MAX_BODY_BYTES} (got ${n})`);
  }
  const hit = cache.get(n);
  if (hit !== undefined) return hit;
  const b = Buffer.alloc(n, 'x');
  if (n <= CACHE_LIMIT && cache.size < 64) cache.set(n, b);
  return b;
}

/** Parses the N of `/bytes/N`; undefined when the path is not of that form. */
export function bytesPathSize(path: string): number | undefined {
  if (!path.startsWith('/bytes/')) return undefined;
  const s = path.slice(7);
  return /^\d{1,9}$/.test(s) ? Number(s) : undefined;
}
