/**
 * Access logs: one JSON line per connection (node agent) or request (waypoint) on stdout;
 * the proxies' own logs go to stderr. The writer is generic over the record; the connection
 * record the agent writes is defined here, the waypoint brings its request record.
 */
import type { ErrorCode } from './errors.ts';

/** What is logged for each connection. */
export interface AccessLogRecord {
  direction: 'outbound' | 'inbound' | 'inbound-plaintext';
  src: string;
  dst: string;
  /** `ok`, `reset` (either side failed mid-way) or `refused` (never connected). */
  outcome: 'ok' | 'reset' | 'refused';
  /** Why a connection was refused, as a registered code (common/errors.ts). */
  code?: ErrorCode;
  /** The human-readable reason: what happened and what to check. */
  reason?: string;
  source?: string;
  /** Peer or expected SPIFFE ID. */
  identity?: string;
  via?: string;
  target?: string;
  bytesSent?: number;
  bytesReceived?: number;
  durationMs?: number;
}

/** An access-log writer; `flush()` writes what is batched now (on exit). */
export interface AccessLog<R extends object = AccessLogRecord> {
  (r: R): void;
  flush(): void;
}

/**
 * Writer for access-log lines; `write` defaults to stdout. Lines of one event-loop turn are
 * written together (one write syscall per turn, not per connection: at thousands of new
 * connections per second the per-line write was a visible share of the agent's CPU).
 */
export function createAccessLog<R extends object = AccessLogRecord>(write: (line: string) => unknown = (l) => process.stdout.write(l),
  schedule: (fn: () => void) => void = setImmediate): AccessLog<R> {
  let batch = '';
  let scheduled = false;
  const flush = (): void => {
    scheduled = false;
    if (batch === '') return;
    const out = batch;
    batch = '';
    write(out);
  };
  // At thousands of connections per second most lines share a millisecond: format it once.
  let isoMs = -1, iso = '';
  const log = (r: R): void => {
    const ms = Date.now();
    if (ms !== isoMs) { isoMs = ms; iso = new Date(ms).toISOString(); }
    // Spliced rather than `{ time, ...r }`: the spread built a second object per line.
    const body = JSON.stringify(r);
    batch += (body.length > 2 ? `{"time":"${iso}",${body.slice(1)}` : `{"time":"${iso}"}`) + '\n';
    if (batch.length >= 64 * 1024) flush();
    else if (!scheduled) { scheduled = true; schedule(flush); }
  };
  return Object.assign(log, { flush });
}
