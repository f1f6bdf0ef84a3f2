/**
 * glibc functions Node does not expose (getsockopt for SO_ORIGINAL_DST, malloc_trim), through
 * koffi. koffi is CommonJS with a prebuilt native binary; it is loaded on first use, so a host
 * without it fails where a caller asks for it, with that caller's message.
 */
import { createRequire } from 'node:module';

/** The koffi surface Rondo uses. */
interface Koffi {
  load(path: string): { func(sig: string): (...args: never[]) => number };
  errno(): number;
}

let koffi: Koffi | undefined;

/** A libc function by its C signature (throws when koffi or libc cannot be loaded). */
export function libcFunction<F>(signature: string): F {
  koffi ??= createRequire(import.meta.url)('koffi') as Koffi;
  return koffi.load('libc.so.6').func(signature) as unknown as F;
}

/** errno of the last libc call made through koffi on this thread. */
export function libcErrno(): number {
  return koffi?.errno() ?? 0;
}
