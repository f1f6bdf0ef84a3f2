/**
 * Pure helpers for HBONE requests: the `:authority` of a CONNECT (`ip:port`, IPv6 in
 * brackets) and the trace headers we propagate. Peer identities: spiffe.ts.
 */
import { isIP } from 'node:net';
import { randomBytes } from 'node:crypto';
import { RondoError } from './errors.ts';

/** Response header carrying why a CONNECT was refused. */
export const REASON_HEADER = 'rondo-reason';

/** A CONNECT `:authority` that is not `ip:port`. */
export class BadAuthorityError extends RondoError {
  constructor(authority: string, why: string) {
    super('RONDO_E_HBONE_AUTHORITY', `CONNECT authority ${JSON.stringify(authority.slice(0, 80))} ${why}: expected <ip>:<port> (IPv6 as [addr]:port)`);
    this.name = 'BadAuthorityError';
  }
}

/** An ip and a port. */
export interface HostPort { ip: string; port: number }

/** Parses `10.0.0.1:80` or `[fd00::1]:80`; hostnames are refused (HBONE carries addresses). */
export function parseAuthority(authority: string): HostPort {
  if (authority.length === 0 || authority.length > 64) throw new BadAuthorityError(authority, 'has a bad length');
  let host: string, portStr: string;
  if (authority.startsWith('[')) {
    const end = authority.indexOf(']');
    if (end < 0 || authority[end + 1] !== ':') throw new BadAuthorityError(authority, 'has an unterminated IPv6 address');
    host = authority.slice(1, end);
    portStr = authority.slice(end + 2);
    if (isIP(host) !== 6) throw new BadAuthorityError(authority, 'has a bracketed host that is not IPv6');
  } else {
    const i = authority.lastIndexOf(':');
    if (i < 0) throw new BadAuthorityError(authority, 'has no port');
    host = authority.slice(0, i);
    portStr = authority.slice(i + 1);
    if (isIP(host) !== 4) throw new BadAuthorityError(authority, 'has a host that is not an IPv4 address');
  }
  if (!/^[0-9]{1,5}$/.test(portStr)) throw new BadAuthorityError(authority, 'has a port that is not a number');
  const port = Number(portStr);
  if (port < 1 || port > 65535) throw new BadAuthorityError(authority, 'has a port outside 1..65535');
  return { ip: host, port };
}

/** Formats an authority the way parseAuthority reads it. */
export function formatAuthority(ip: string, port: number): string {
  return isIP(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** The source workload fields that go into `baggage`. */
export interface BaggageSource { namespace: string; name: string; workloadName?: string; app?: string; version?: string }

/** W3C baggage with the source workload's metadata (keys as Istio's ambient mode sends them). */
export function buildBaggage(src: BaggageSource): string {
  const kv: [string, string | undefined][] = [
    ['k8s.namespace.name', src.namespace],
    ['k8s.pod.name', src.name],
    ['k8s.deployment.name', src.workloadName],
    ['service.name', src.app],
    ['service.version', src.version],
  ];
  return kv.filter((e): e is [string, string] => e[1] !== undefined && e[1] !== '')
    .map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join(',');
}

// One randomBytes call per 170 connections instead of two per connection (each is a syscall-
// backed CSPRNG fill; trace IDs need uniqueness, and still get it from the same generator).
let randPool = Buffer.alloc(0);
let randAt = 0;
function pooledRandom(n: number): Buffer {
  if (randAt + n > randPool.length) { randPool = randomBytes(4096); randAt = 0; }
  const out = randPool.subarray(randAt, randAt + n);
  randAt += n;
  return out;
}

/** A fresh W3C `traceparent` (sampled), for a connection that starts a trace. */
export function newTraceparent(rand: (n: number) => Buffer = pooledRandom): string {
  return `00-${rand(16).toString('hex')}-${rand(8).toString('hex')}-01`;
}

/** Reads the source workload back from a `baggage` header (unknown keys ignored, bounded). */
export function parseBaggage(header: string | undefined): Partial<BaggageSource> {
  const out: Partial<BaggageSource> = {};
  if (header === undefined || header.length > 4096) return out;
  const keys: Record<string, keyof BaggageSource> = {
    'k8s.namespace.name': 'namespace', 'k8s.pod.name': 'name', 'k8s.deployment.name': 'workloadName', 'service.name': 'app', 'service.version': 'version',
  };
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const field = keys[part.slice(0, eq).trim()];
    if (field === undefined) continue;
    try { out[field] = decodeURIComponent(part.slice(eq + 1).trim().split(';')[0] ?? ''); } catch { /* malformed value: skip it */ }
  }
  return out;
}
