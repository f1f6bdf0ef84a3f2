/**
 * HBONE server (port 15008): plain TCP accept -> original destination -> the TLS identity
 * of the workload at that address -> mutual TLS 1.3 (client chain verified against the
 * trust bundle) -> one shared HTTP/2 server. CONNECT streams with a valid `:authority` go
 * to the handler, which authorizes, connects and pumps; everything else is refused with a
 * reason and counted, without disturbing other streams or sessions.
 */
import net from 'node:net';
import type tls from 'node:tls';
import http2 from 'node:http2';
import type { Http2Session, IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { Logger } from './log.ts';
import { RondoError, errorMessage } from './errors.ts';
import { REASON_HEADER, parseAuthority } from './hbone-headers.ts';
import { spiffeIdOf } from './spiffe.ts';
import { stripV4Mapped } from './ip.ts';
import type { HostPort } from './hbone-headers.ts';
import { DEFAULT_WINDOW } from './hbone-client.ts';

/** A CONNECT that passed transport checks; the handler must answer it (accept or refuse). */
export interface InboundTunnel {
  stream: ServerHttp2Stream;
  /** Parsed `:authority`: the workload address and port the client wants. */
  target: HostPort;
  /** Where the TCP connection was going (original destination, or the listener address). */
  connectionDst: HostPort;
  /** SPIFFE ID of the verified client certificate, if it carries one. */
  peerIdentity: string | undefined;
  remote: HostPort;
  headers: IncomingHttpHeaders;
}

/** Key, chain (leaf first) and trust bundle of one local workload, all PEM. */
export interface ServerCredentials {
  readonly keyPem: string;
  readonly chain: readonly string[];
  readonly trustBundle: readonly string[];
}

/** Options of an HboneServer. */
export interface HboneServerOptions {
  log: Logger;
  /**
   * The certificate to present for a connection to `dst`; `undefined` refuses the connection.
   * Return the same object for the same certificate: a TLS server is built once per object.
   */
  credentialsFor: (dst: HostPort) => ServerCredentials | undefined;
  /** Handles each valid CONNECT. Must answer with `acceptTunnel` or `refuseTunnel`. */
  onTunnel: (t: InboundTunnel) => void;
  /** Original destination of an accepted socket (default: its local address). */
  originalDestination?: (s: net.Socket) => HostPort | undefined;
  /** Called once per refused connection/stream with a short reason (for metrics). */
  onRefused?: (reason: string) => void;
  windowSize?: number;
  /** Largest accepted request header block (default 16 KiB). */
  maxHeaderListSize?: number;
  /** TLS handshake deadline (default 10 s). */
  handshakeTimeoutMs?: number;
  /** CONNECTs one HTTP/2 session may have waiting for their answer (default DEFAULT_MAX_PENDING_PER_SESSION). */
  maxPendingPerSession?: number;
  /** CONNECTs all sessions together may have waiting for their answer (default DEFAULT_MAX_PENDING). */
  maxPending?: number;
}

/**
 * Unanswered CONNECTs per HTTP/2 session: in the agent, each one holds a pod connect (a
 * descriptor) until the pod answers or the connect times out. One peer with a valid
 * certificate could otherwise hold as many descriptors as it opens streams. Healthy pods
 * answer a connect in well under a millisecond, so a legitimate burst (the bench opens 50
 * connections at a time) stays far below this.
 */
export const DEFAULT_MAX_PENDING_PER_SESSION = 512;
/** Unanswered CONNECTs over all sessions of one server (an agent process or worker). */
export const DEFAULT_MAX_PENDING = 4096;

// Set while a CONNECT handed to the handler is unanswered; accept/refuse release the slot.
const releaseOnAnswer = new WeakMap<ServerHttp2Stream, () => void>();
function answered(stream: ServerHttp2Stream): void {
  const release = releaseOnAnswer.get(stream);
  if (release !== undefined) { releaseOnAnswer.delete(stream); release(); }
}

/** Answers a CONNECT with a refusal: status plus a reason header, then ends the stream cleanly. */
export function refuseTunnel(stream: ServerHttp2Stream, status: number, reason: string): void {
  answered(stream);
  if (stream.destroyed || stream.closed) return;
  if (!stream.headersSent) stream.respond({ ':status': status, [REASON_HEADER]: reason.slice(0, 200) }, { endStream: true });
  else stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
  // Whatever the client already sent is not read; draining lets the stream close without RST.
  stream.resume();
}

/**
 * Answers a CONNECT with 200; the caller then pumps bytes. Returns false, answering nothing,
 * when the stream is already gone (the peer reset it while the handler was connecting):
 * the caller must then close its upstream.
 */
export function acceptTunnel(stream: ServerHttp2Stream): boolean {
  answered(stream);
  // respond() on a closed stream throws ERR_HTTP2_INVALID_STREAM from an I/O callback.
  if (stream.destroyed || stream.closed) return false;
  stream.respond({ ':status': 200 }, { endStream: false });
  return true;
}

/** The 15008 listener. `create()` binds; `close()` drains. */
export class HboneServer {
  readonly #o: HboneServerOptions;
  readonly #tcp: net.Server;
  readonly #servers = new WeakMap<ServerCredentials, http2.Http2SecureServer>();
  readonly #sessions = new Set<Http2Session>();
  readonly #sockets = new Set<net.Socket>();
  // Original destination per live connection, keyed by the peer's address: the TLS socket
  // Node builds inside the TLS server shares it with the accepted TCP socket.
  readonly #dstByPeer = new Map<string, HostPort>();
  // getPeerCertificate() builds a JS object from the X.509 each call (~20 µs): once per session.
  readonly #peerIdBySocket = new WeakMap<tls.TLSSocket, string | undefined>();
  /** Refusals by reason, for the admin page and tests. */
  readonly refused = new Map<string, number>();
  readonly #pendingBySession = new WeakMap<Http2Session, number>();
  #pending = 0;
  #closing: Promise<void> | undefined;

  private constructor(o: HboneServerOptions) {
    this.#o = o;
    this.#tcp = net.createServer({ noDelay: true }, (s) => this.#onConnection(s));
  }

  // One HTTP/2-over-TLS server (not listening) per workload certificate: the certificate
  // depends on the original destination, known only after accept, and Node offers no public
  // per-connection hook before the handshake. Sockets are handed over with emit('connection').
  #serverFor(creds: ServerCredentials): http2.Http2SecureServer {
    const cached = this.#servers.get(creds);
    if (cached !== undefined) return cached;
    const o = this.#o;
    const windowSize = o.windowSize ?? DEFAULT_WINDOW;
    const h2 = http2.createSecureServer({
      key: creds.keyPem,
      cert: creds.chain.join('\n'),
      ca: [...creds.trustBundle],
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
      ALPNProtocols: ['h2'],
      handshakeTimeout: o.handshakeTimeoutMs ?? 10_000,
      settings: { initialWindowSize: windowSize, maxConcurrentStreams: 100_000, maxHeaderListSize: o.maxHeaderListSize ?? 16 * 1024, enablePush: false },
      maxSessionMemory: Math.max(10, Math.ceil((windowSize * 4) / (1024 * 1024))),
      maxHeaderListPairs: 64,
    });
    h2.on('session', (s: Http2Session) => {
      this.#sessions.add(s);
      s.once('close', () => this.#sessions.delete(s));
      s.on('error', (e: Error) => { this.#count('session_error'); o.log.debug('HBONE session error', { error: e }); });
      s.on('frameError', () => this.#count('frame_error'));
      s.setLocalWindowSize(windowSize);
    });
    // A failed handshake: no client certificate, an untrusted chain, or not TLS at all.
    h2.on('tlsClientError', (e: Error) => { this.#count('tls_handshake'); o.log.debug('HBONE TLS handshake failed', { error: e }); });
    h2.on('sessionError', () => this.#count('protocol_error'));
    h2.on('unknownProtocol', (sock: net.Socket) => { this.#count('no_alpn_h2'); sock.destroy(); });
    h2.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => this.#onStream(stream, headers));
    this.#servers.set(creds, h2);
    return h2;
  }

  /** Binds the listener (fails loudly: port in use, bad address). */
  static async create(o: HboneServerOptions & { host: string; port: number; reusePort?: boolean }): Promise<HboneServer> {
    const srv = new HboneServer(o);
    await new Promise<void>((resolve, reject) => {
      srv.#tcp.once('error', (e: Error) => reject(new RondoError('RONDO_E_LISTEN',
        `cannot listen for HBONE on ${o.host}:${o.port}: ${errorMessage(e)} (is another agent or waypoint running here?)`, { cause: e })));
      srv.#tcp.listen({ host: o.host, port: o.port, reusePort: o.reusePort ?? false, exclusive: o.reusePort ?? false }, resolve);
    });
    srv.#tcp.on('error', (e: Error) => o.log.error('HBONE listener error', { error: e }));
    return srv;
  }

  /** The bound address (port 0 resolves to the real port). */
  get address(): net.AddressInfo { return this.#tcp.address() as net.AddressInfo; }

  /** Open HTTP/2 sessions (one per peer agent or waypoint). */
  get sessionCount(): number { return this.#sessions.size; }

  /** CONNECTs handed to the handler and not answered yet (their upstream connects, in the agent). */
  get pendingCount(): number { return this.#pending; }

  #count(reason: string): void {
    this.refused.set(reason, (this.refused.get(reason) ?? 0) + 1);
    this.#o.onRefused?.(reason);
  }

  #onConnection(socket: net.Socket): void {
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    socket.on('error', () => undefined);
    if (this.#closing !== undefined) { socket.destroy(); return; }
    let dst: HostPort | undefined;
    try {
      dst = this.#o.originalDestination?.(socket);
    } catch (e) {
      this.#o.log.warn('HBONE: cannot read original destination', { error: e });
    }
    dst ??= { ip: stripV4Mapped(socket.localAddress ?? ''), port: socket.localPort ?? 0 };
    const creds = this.#o.credentialsFor(dst);
    if (creds === undefined) {
      this.#count('unknown_destination');
      this.#o.log.debug('HBONE: no local workload at destination', { dst });
      socket.destroy();
      return;
    }
    const peer = `${socket.remoteAddress}|${socket.remotePort}`;
    this.#dstByPeer.set(peer, dst);
    socket.once('close', () => this.#dstByPeer.delete(peer));
    this.#serverFor(creds).emit('connection', socket);
  }

  #onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    stream.on('error', () => undefined);
    const tlsSock = stream.session?.socket as tls.TLSSocket | undefined;
    const dst = tlsSock === undefined ? undefined : this.#dstByPeer.get(`${tlsSock.remoteAddress}|${tlsSock.remotePort}`);
    if (tlsSock === undefined || dst === undefined) { this.#count('no_session_meta'); refuseTunnel(stream, 500, 'internal: unknown session'); return; }
    // nghttp2 only advertises SETTINGS_MAX_HEADER_LIST_SIZE; enforce it here as well.
    const limit = this.#o.maxHeaderListSize ?? 16 * 1024;
    let size = 0;
    // for-in over the header object: Object.entries + String() per header showed per connection.
    for (const k in headers) {
      const v = headers[k];
      size += k.length + 32 + (typeof v === 'string' ? v.length : Array.isArray(v) ? v.join('').length : String(v ?? '').length);
    }
    if (size > limit) {
      this.#count('header_too_large');
      refuseTunnel(stream, 431, `request headers of ${size} bytes exceed the limit of ${limit}`);
      return;
    }
    if (headers[':method'] !== 'CONNECT') {
      this.#count('not_connect');
      refuseTunnel(stream, 405, `only CONNECT is served on HBONE, got ${String(headers[':method'])}`);
      return;
    }
    let target: HostPort;
    try {
      target = parseAuthority(String(headers[':authority'] ?? ''));
    } catch (e) {
      this.#count('bad_authority');
      refuseTunnel(stream, 400, errorMessage(e));
      return;
    }
    if (!this.#holdPending(stream, tlsSock)) return;
    const sock = tlsSock;
    try {
      this.#o.onTunnel({
        stream,
        target,
        connectionDst: dst,
        peerIdentity: this.#peerIdentity(tlsSock),
        remote: { ip: sock?.remoteAddress ?? '', port: sock?.remotePort ?? 0 },
        headers,
      });
    } catch (e) {
      this.#count('handler_error');
      this.#o.log.error('HBONE tunnel handler threw', { error: e });
      refuseTunnel(stream, 500, 'internal error');
    }
  }

  // Takes a pending slot for the stream until it is answered or closes (a peer's reset must
  // free it as well), or refuses the stream with 503 when the session or the server is full.
  #holdPending(stream: ServerHttp2Stream, tlsSock: tls.TLSSocket): boolean {
    const session = stream.session;
    if (session === undefined) return false;
    const perSessionLimit = this.#o.maxPendingPerSession ?? DEFAULT_MAX_PENDING_PER_SESSION;
    const limit = this.#o.maxPending ?? DEFAULT_MAX_PENDING;
    const mine = this.#pendingBySession.get(session) ?? 0;
    if (mine >= perSessionLimit || this.#pending >= limit) {
      this.#count('too_many_pending');
      const which = mine >= perSessionLimit
        ? `${mine} CONNECTs from ${tlsSock.remoteAddress ?? '?'} on this session are still connecting (limit ${perSessionLimit})`
        : `${this.#pending} CONNECTs are still connecting on this server (limit ${limit})`;
      this.#o.log.debug('HBONE: CONNECT refused, too many pending', { reason: which });
      refuseTunnel(stream, 503, `too many pending CONNECTs: ${which}`);
      return false;
    }
    this.#pending++;
    this.#pendingBySession.set(session, mine + 1);
    let held = true;
    const release = (): void => {
      if (!held) return;
      held = false;
      this.#pending--;
      this.#pendingBySession.set(session, (this.#pendingBySession.get(session) ?? 1) - 1);
    };
    releaseOnAnswer.set(stream, release);
    stream.once('close', release);
    return true;
  }

  #peerIdentity(s: tls.TLSSocket): string | undefined {
    if (this.#peerIdBySocket.has(s)) return this.#peerIdBySocket.get(s);
    const id = spiffeIdOf(s.getPeerCertificate());
    this.#peerIdBySocket.set(s, id);
    return id;
  }

  /**
   * Stops accepting, sends GOAWAY on every session so peers open new tunnels elsewhere,
   * lets open streams finish until `deadlineMs`, then destroys what is left. Idempotent.
   */
  close(deadlineMs = 0): Promise<void> {
    this.#closing ??= (async () => {
      const listenerClosed = new Promise<void>((r) => this.#tcp.close(() => r()));
      const sessions = [...this.#sessions];
      await Promise.race([
        Promise.all(sessions.map((s) => new Promise<void>((r) => { s.once('close', () => r()); s.close(); }))),
        new Promise<void>((r) => setTimeout(r, deadlineMs).unref()),
      ]);
      for (const s of this.#sessions) s.destroy();
      for (const s of this.#sockets) s.destroy();
      await listenerClosed;
    })();
    return this.#closing;
  }
}
