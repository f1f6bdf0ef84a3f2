/** One JSON access-log line per connection on stdout (logs of the agent itself go to stderr). */

/** What is logged for each connection. */
export interface AccessLogRecord {
  direction: 'outbound' | 'inbound' | 'inbound-plaintext';
  src: string;
  dst: string;
  /** `ok`, `reset` (either side failed mid-way) or `refused` (never connected). */
  outcome: 'ok' | 'reset' | 'refused';
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

/** Writer for access-log lines; `write` defaults to stdout. */
export function createAccessLog(write: (line: string) => unknown = (l) => process.stdout.write(l)): (r: AccessLogRecord) => void {
  return (r) => { write(JSON.stringify({ time: new Date().toISOString(), ...r }) + '\n'); };
}
