/** IPv4 arithmetic for the lab plan: CIDR parsing, overlap checks, address allocation. */
import { InvalidInputError } from '../common/errors.ts';

/** An IPv4 network: base address (as an unsigned 32-bit int) and prefix length. */
export interface Cidr { base: number; prefix: number; text: string }

/** Parses dotted-quad IPv4 into an unsigned int; undefined if it is not one. */
export function ipToInt(ip: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (m === null) return undefined;
  let n = 0;
  for (let i = 1; i <= 4; i++) {
    const o = Number(m[i]);
    if (o > 255) return undefined;
    n = n * 256 + o;
  }
  return n;
}

/** Formats an unsigned int as dotted-quad IPv4. */
export function intToIp(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

/** Parses `a.b.c.d/n`; `what` names the field in the error. The base must be the network address. */
export function parseCidr(text: string, what: string): Cidr {
  const [ip, len, ...rest] = text.split('/');
  const base = ipToInt(ip ?? '');
  const prefix = Number(len);
  if (base === undefined || rest.length > 0 || len === undefined || !/^\d{1,2}$/.test(len) || prefix > 32) {
    throw new InvalidInputError(`${what}: "${text}" is not an IPv4 CIDR like 10.244.0.0/16`);
  }
  if (base % 2 ** (32 - prefix) !== 0) {
    throw new InvalidInputError(`${what}: "${text}" has host bits set; did you mean ${intToIp(base - (base % 2 ** (32 - prefix)))}/${prefix}?`);
  }
  return { base, prefix, text };
}

/** Number of addresses in a CIDR. */
export function cidrSize(c: Cidr): number {
  return 2 ** (32 - c.prefix);
}

/** True when two networks share at least one address. */
export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return a.base < b.base + cidrSize(b) && b.base < a.base + cidrSize(a);
}

/** True when the address lies inside the network. */
export function cidrContains(c: Cidr, ip: string): boolean {
  const n = ipToInt(ip);
  return n !== undefined && n >= c.base && n < c.base + cidrSize(c);
}
