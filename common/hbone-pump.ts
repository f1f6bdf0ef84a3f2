/**
 * Bidirectional byte pump between two duplex streams (TCP sockets, TLS sockets, HTTP/2
 * streams) with `pipe` semantics, without pipe(): backpressure both ways, half-close
 * propagated, and a failure on one side reset on the other. A cleanly finished side is never reset
 * (resetting a finished HTTP/2 stream trips nghttp2's rapid-reset guard for the whole
 * session, data-plane-notes pitfall 1).
 */
import type { Duplex } from 'node:stream';
import { Socket } from 'node:net';

/** What one pumped connection did, for access logs and metrics. */
export interface PumpResult {
  /** Bytes read from `a` and written to `b`. */
  aToB: number;
  /** Bytes read from `b` and written to `a`. */
  bToA: number;
  /** First error seen, if either side failed or was reset. */
  error?: Error;
  /** Which side failed first. */
  failedSide?: 'a' | 'b';
}

interface H2Like { rstCode: number | undefined }
// node:http2 exports no Http2Stream class to test against; its streams are the duplexes with rstCode.
function asH2(s: Duplex): H2Like | undefined {
  return 'rstCode' in s ? (s as unknown as H2Like) : undefined;
}

/** Whether an HTTP/2 stream ended with RST_STREAM (not a clean END_STREAM both ways). */
function streamWasReset(s: Duplex): boolean {
  const h = asH2(s);
  return h !== undefined && h.rstCode !== undefined && h.rstCode !== 0;
}

// Mirror a failure onto the other side the way TCP would: RST for sockets, RST_STREAM for
// HTTP/2 streams. Not stream.close(CANCEL): it flushes END_STREAM before the RST, so the
// peer would first see a clean end (a FIN) and only then the reset.
// A socket whose write side is already ending (its peer's FIN was forwarded) cannot be reset:
// uv_tcp_close_reset() answers EINVAL and Node then never closes the handle nor emits
// 'close', so the pump never finished and the fd leaked. Such a socket is destroyed plainly.
function resetSide(s: Duplex): void {
  if (s.destroyed) return;
  if (s instanceof Socket && !s.writableEnded) s.resetAndDestroy();
  else s.destroy(s instanceof Socket ? undefined : new Error('peer connection reset'));
}

/** Per-chunk byte callbacks, so long-lived connections show progress in metrics. */
export interface PumpHooks {
  aToB?: (n: number) => void;
  bToA?: (n: number) => void;
}

// HTTP/2 delivers a 64 KiB TLS read as four 16 KiB DATA chunks in one turn; written to a
// socket one by one, each is a syscall. Corking the socket until the turn's check phase
// sends them with one writev (bulk on loopback: -2..-9 % CPU per GB, +4..13 % throughput).
// Only chunks of 4 KiB and more: a small one is a request or response that should go out
// now (corking every chunk cost c=1 a few % CPU per request). Only plain sockets: HTTP/2
// streams batch in nghttp2. end() flushes a corked socket before its FIN.
const CORK_MIN_CHUNK = 4 * 1024;
function coalescer(dst: Duplex): ((n: number) => void) | undefined {
  if (!(dst instanceof Socket)) return undefined;
  let corked = false;
  const uncork = (): void => { corked = false; dst.uncork(); };
  return (n) => {
    if (corked || n < CORK_MIN_CHUNK) return;
    corked = true;
    dst.cork();
    setImmediate(uncork);
  };
}

/**
 * One direction: every chunk of `src` is counted and written to `dst`; when `dst` is full the
 * source pauses until 'drain'; `src`'s end becomes `dst`'s end (half-close). This is what
 * `src.pipe(dst)` does, in one 'data' listener: pipe() adds its own listener next to the
 * counting one (EventEmitter copies the listener array on every emit with more than one) and
 * registers eight more listeners per direction and connection.
 */
function forward(src: Duplex, dst: Duplex, count: (n: number) => void, cork: ((n: number) => void) | undefined): void {
  src.on('data', (c: Buffer) => {
    count(c.length);
    if (dst.destroyed) return;
    cork?.(c.length);
    if (!dst.write(c)) src.pause();
  });
  dst.on('drain', () => { if (!src.destroyed) src.resume(); });
  const end = (): void => { if (!dst.destroyed && !dst.writableEnded) dst.end(); };
  // A source may have ended already (the client's data and FIN arrived before the CONNECT's
  // 200): pipe() ends the destination then too.
  if (src.readableEnded) process.nextTick(end);
  else src.once('end', end);
  // A 'data' listener does not restart a source someone paused (the agent pauses sockets
  // while it decides and connects); pipe() resumes it too.
  if (!src.destroyed) src.resume();
}

/** Pumps bytes between `a` and `b` until both are closed; resolves with the counts. */
export function pump(a: Duplex, b: Duplex, hooks: PumpHooks = {}): Promise<PumpResult> {
  const res: PumpResult = { aToB: 0, bToA: 0 };
  return new Promise((resolve) => {
    let closed = 0;
    const fail = (side: 'a' | 'b', err: Error): void => {
      if (res.error === undefined) { res.error = err; res.failedSide = side; }
      resetSide(side === 'a' ? b : a);
    };
    const onClose = (side: 'a' | 'b', s: Duplex): void => {
      // Closed without a clean end (peer reset, session torn down, forced drain): nothing more
      // can flow, so the other side is reset as TCP would be.
      if (res.error === undefined && (streamWasReset(s) || !s.readableEnded)) {
        const h = asH2(s);
        const code = h !== undefined ? ` (code ${h.rstCode})` : '';
        fail(side, new Error(`${side === 'a' ? 'first' : 'second'} side closed before the end of its stream${code}`));
      }
      if (++closed === 2) resolve(res);
    };
    const ha = hooks.aToB, hb = hooks.bToA;
    forward(a, b, ha === undefined ? (n) => { res.aToB += n; } : (n) => { res.aToB += n; ha(n); }, coalescer(b));
    forward(b, a, hb === undefined ? (n) => { res.bToA += n; } : (n) => { res.bToA += n; hb(n); }, coalescer(a));
    a.on('error', (e: Error) => fail('a', e));
    b.on('error', (e: Error) => fail('b', e));
    // HTTP/2 streams announce a peer's RST_STREAM with 'aborted' before ending their readable
    // side: reset the other side first, or it would see a clean FIN instead of a reset.
    a.once('aborted', () => fail('a', new Error('stream reset by peer')));
    b.once('aborted', () => fail('b', new Error('stream reset by peer')));
    a.once('close', () => onClose('a', a));
    b.once('close', () => onClose('b', b));
  });
}
