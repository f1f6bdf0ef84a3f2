/**
 * HBONE client: HTTP/2 CONNECT over mutual TLS 1.3, pooled. One HTTP/2 session per
 * (source identity + its current certificate, destination address, expected destination
 * identity) carries many CONNECT streams; the handshake cost is paid once per pair of
 * workloads, not per connection (data-plane-notes: 3.3x more new connections per second).
 */
import http2 from 'node:http2';
import tls from 'node:tls';
import type { ClientHttp2Session, ClientHttp2Stream, OutgoingHttpHeaders } from 'node:http2';
import { RondoError, errorMessage } from './errors.ts';
import type { ErrorCode } from './errors.ts';
import type { Logger } from './log.ts';
import { realClock } from './clock.ts';
import type { Clock, TimerHandle } from './clock.ts';
import { REASON_HEADER, formatAuthority } from './hbone-headers.ts';
import { spiffeIdOf, spiffeUrisOf } from './spiffe.ts';
import type { HostPort } from './hbone-headers.ts';

/** Default HTTP/2 stream and connection window: several MiB so bulk flows are not window-bound. */
export const DEFAULT_WINDOW = 8 * 1024 * 1024;

/** A tunnel could not be opened: the message says which hop and what to check. */
export class HboneConnectError extends RondoError {
  /** HTTP status of the refused CONNECT, when the peer answered. */
  readonly status: number | undefined;
  constructor(code: ErrorCode, message: string, status?: number, options?: ErrorOptions) {
    super(code, message, options);
    this.name = 'HboneConnectError';
    this.status = status;
  }
}

/** Options of an HboneClientPool. */
export interface HboneClientPoolOptions {
  log: Logger;
  /** Close a session after it carried no stream for this long (default 60 s). */
  idleTimeoutMs?: number;
  /** TCP connect + TLS handshake + SETTINGS deadline (default 10 s). */
  connectTimeoutMs?: number;
  /** Stream and connection flow-control window (default 8 MiB). */
  windowSize?: number;
  /** Idle-close timers (default the real clock; tests drive a ManualClock). */
  clock?: Clock;
}

/** One CONNECT to open. */
export interface HboneConnectRequest {
  /** Where the TLS connection goes (a node agent or waypoint on 15008). */
  connectTo: HostPort;
  /** `:authority` of the CONNECT: the final target `ip:port`. */
  authority: string;
  /** SPIFFE ID the server must present; anything else is refused. */
  expectedIdentity: string;
  /** SPIFFE ID of the client certificate in `secureContext` (part of the pool key). */
  sourceIdentity: string;
  /** Client key + chain + trust bundle, built once per certificate (pitfall 4). */
  secureContext: tls.SecureContext;
  /** Extra request headers (traceparent, baggage). */
  headers?: OutgoingHttpHeaders;
}

/** A CONNECT sent but not yet answered (see HboneClientPool.open). */
export interface PendingTunnel {
  stream: ClientHttp2Stream;
  /** Resolves on 200; rejects with an HboneConnectError carrying the status otherwise. */
  established: Promise<void>;
}

interface PooledSession {
  key: string;
  session: ClientHttp2Session;
  streams: number;
  idleTimer: TimerHandle | undefined;
}

const ctxIds = new WeakMap<tls.SecureContext, number>();
let nextCtxId = 1;
// A rotated certificate gets a new SecureContext and so a new pool key: new connections
// use the new certificate while streams on the old session finish undisturbed.
function ctxId(ctx: tls.SecureContext): number {
  let id = ctxIds.get(ctx);
  if (id === undefined) { id = nextCtxId++; ctxIds.set(ctx, id); }
  return id;
}

/** Pool of HBONE sessions; `connect()` returns an established CONNECT stream. */
export class HboneClientPool {
  readonly #o: Required<Omit<HboneClientPoolOptions, 'clock'>>;
  readonly #clock: Clock;
  readonly #sessions = new Map<string, PooledSession>();
  readonly #pending = new Map<string, Promise<PooledSession>>();
  // TLS 1.3 tickets arrive after the handshake; reusing them halves handshake CPU (pitfall 3).
  readonly #tickets = new Map<string, Buffer>();
  #closed = false;

  constructor(o: HboneClientPoolOptions) {
    this.#o = {
      log: o.log,
      idleTimeoutMs: o.idleTimeoutMs ?? 60_000,
      connectTimeoutMs: o.connectTimeoutMs ?? 10_000,
      windowSize: o.windowSize ?? DEFAULT_WINDOW,
    };
    this.#clock = o.clock ?? realClock;
  }

  /** Number of live (or connecting) sessions, for the admin page and tests. */
  get sessionCount(): number { return this.#sessions.size + this.#pending.size; }

  /** Opens a CONNECT stream; resolves once the peer answered 200, rejects with the reason otherwise. */
  async connect(req: HboneConnectRequest): Promise<ClientHttp2Stream> {
    const t = await this.open(req);
    await t.established;
    return t.stream;
  }

  /**
   * Sends a CONNECT and resolves as soon as the stream exists (session ready), before the
   * peer answers: bytes written to `stream` now travel with the HEADERS, which saves a round
   * trip per connection (data-plane-notes pitfall 7). `established` resolves on 200 and
   * rejects with the reason otherwise; the caller must not read `stream` before that.
   */
  async open(req: HboneConnectRequest): Promise<PendingTunnel> {
    if (this.#closed) throw new HboneConnectError('RONDO_E_CLOSED', 'HBONE client pool is closed (agent draining)');
    const pooled = await this.#session(req);
    return this.#open(pooled, req);
  }

  /** Closes every session gracefully (open streams finish), then forcibly after `graceMs`. */
  async close(graceMs = 0): Promise<void> {
    this.#closed = true;
    const all = [...this.#sessions.values()].map((p) => Promise.resolve(p)).concat([...this.#pending.values()]);
    this.#sessions.clear();
    this.#pending.clear();
    await Promise.all(all.map(async (p) => {
      const s = await p.then((x) => x.session, () => undefined);
      if (s === undefined || s.destroyed) return;
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => s.destroy(), graceMs);
        s.close(() => { clearTimeout(t); resolve(); });
        s.once('close', () => { clearTimeout(t); resolve(); });
      });
    }));
  }

  #key(req: HboneConnectRequest): string {
    return `${req.sourceIdentity}#${ctxId(req.secureContext)}|${formatAuthority(req.connectTo.ip, req.connectTo.port)}|${req.expectedIdentity}`;
  }

  async #session(req: HboneConnectRequest): Promise<PooledSession> {
    const key = this.#key(req);
    const live = this.#sessions.get(key);
    if (live !== undefined && !live.session.closed && !live.session.destroyed) return live;
    const pending = this.#pending.get(key);
    if (pending !== undefined) return pending;
    const p = this.#dial(key, req);
    this.#pending.set(key, p);
    try {
      const s = await p;
      if (!this.#closed) this.#sessions.set(key, s);
      return s;
    } finally {
      this.#pending.delete(key);
    }
  }

  #forget(p: PooledSession): void {
    if (this.#sessions.get(p.key) === p) this.#sessions.delete(p.key);
  }

  #dial(key: string, req: HboneConnectRequest): Promise<PooledSession> {
    const { ip, port } = req.connectTo;
    const where = formatAuthority(ip, port);
    const ticketKey = `${req.sourceIdentity}|${where}`;
    return new Promise<PooledSession>((resolve, reject) => {
      let settled = false;
      const fail = (e: Error): void => {
        if (settled) return;
        settled = true;
        session.destroy();
        reject(e);
      };
      const ticket = this.#tickets.get(ticketKey);
      const session = http2.connect(`https://${where}`, {
        settings: { initialWindowSize: this.#o.windowSize, enablePush: false },
        // Large windows let several MiB sit unacknowledged per session; nghttp2 needs room for them.
        maxSessionMemory: Math.max(10, Math.ceil((this.#o.windowSize * 4) / (1024 * 1024))),
        createConnection: () => {
          const s = tls.connect({
            host: ip,
            port,
            secureContext: req.secureContext,
            ALPNProtocols: ['h2'],
            minVersion: 'TLSv1.3',
            rejectUnauthorized: true,
            ...(ticket !== undefined ? { session: ticket } : {}),
            checkServerIdentity: (_host, cert) => {
              if (spiffeIdOf(cert) === req.expectedIdentity) return undefined;
              const ids = spiffeUrisOf(cert);
              return new HboneConnectError('RONDO_E_HBONE_PEER_IDENTITY',
                `HBONE peer ${where} presented ${ids.length > 0 ? ids.join(', ') : 'no SPIFFE ID'}, expected ${req.expectedIdentity}: ` +
                'is the workload at that address the one the control plane says it is (stale endpoint, IP reused)?');
            },
          });
          s.on('session', (t: Buffer) => this.#tickets.set(ticketKey, t));
          // Nagle on the tunnel would hold each small frame until the previous one is ACKed
          // (delayed ACK: up to 40 ms); http2 does not turn it off on a socket it is given.
          s.setNoDelay(true);
          return s;
        },
      });
      const timer = setTimeout(() => fail(new HboneConnectError('RONDO_E_HBONE_TIMEOUT',
        `HBONE connection to ${where} not established within ${this.#o.connectTimeoutMs} ms: is port 15008 reachable (NetworkPolicy, firewall, agent down)?`)), this.#o.connectTimeoutMs);
      timer.unref();
      session.once('error', (e: Error) => {
        clearTimeout(timer);
        fail(e instanceof RondoError ? e : new HboneConnectError('RONDO_E_HBONE_CONNECT',
          `HBONE connection to ${where} failed: ${errorMessage(e)}`, undefined, { cause: e }));
      });
      session.once('connect', () => {
        clearTimeout(timer);
        if (settled) return;
        settled = true;
        session.setLocalWindowSize(this.#o.windowSize);
        const pooled: PooledSession = { key, session, streams: 0, idleTimer: undefined };
        const drop = (): void => {
          this.#clock.clearTimeout(pooled.idleTimer);
          this.#forget(pooled);
        };
        // A GOAWAY or close makes the session unusable for new streams: forget it at once.
        session.on('goaway', drop);
        session.on('close', drop);
        session.on('error', (e: Error) => {
          this.#o.log.warn('HBONE session failed', { peer: where, error: e });
          drop();
        });
        this.#armIdle(pooled);
        this.#o.log.debug('HBONE session established', { peer: where, identity: req.expectedIdentity, resumed: ticket !== undefined });
        resolve(pooled);
      });
    });
  }

  #armIdle(p: PooledSession): void {
    this.#clock.clearTimeout(p.idleTimer);
    p.idleTimer = undefined;
    if (p.streams > 0) return;
    const t = this.#clock.setTimeout(() => {
      if (p.streams > 0) return;
      this.#forget(p);
      p.session.close();
    }, this.#o.idleTimeoutMs);
    t.unref();
    p.idleTimer = t;
  }

  #open(p: PooledSession, req: HboneConnectRequest): PendingTunnel {
    p.streams++;
    this.#armIdle(p);
    const stream = p.session.request({ ':method': 'CONNECT', ':authority': req.authority, ...req.headers }, { endStream: false });
    stream.once('close', () => { p.streams--; this.#armIdle(p); });
    const established = new Promise<void>((resolve, reject) => {
      let answered = false;
      const onEarlyClose = (): void => {
        if (answered) return;
        answered = true;
        reject(new HboneConnectError('RONDO_E_HBONE_STREAM',
          `HBONE CONNECT ${req.authority} via ${formatAuthority(req.connectTo.ip, req.connectTo.port)} closed before a response (code ${stream.rstCode})`));
      };
      stream.once('error', onEarlyClose);
      stream.once('close', onEarlyClose);
      stream.once('response', (h) => {
        answered = true;
        const status = Number(h[':status']);
        if (status === 200) { resolve(); return; }
        const reason = h[REASON_HEADER];
        // The peer ends the stream after a refusal; consume it so it closes cleanly (no RST).
        stream.resume();
        stream.end();
        reject(new HboneConnectError('RONDO_E_HBONE_REFUSED',
          `HBONE CONNECT ${req.authority} refused with ${status}${typeof reason === 'string' ? `: ${reason}` : ''}`, status));
      });
    });
    return { stream, established };
  }
}
