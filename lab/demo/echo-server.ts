/**
 * The demo echo server: HTTP/1.1, HTTP/2 cleartext (prior knowledge) and gRPC on one port.
 * A plain TCP listener peeks at each connection's first bytes and hands the socket to an
 * HTTP/2 or an HTTP/1.1 server that never listen themselves.
 */
import net from 'node:net';
import http from 'node:http';
import http2 from 'node:http2';
import type { Logger } from '../../common/log.ts';
import { RondoError, errorMessage } from '../../common/errors.ts';
import type { PodIdentity } from './identity.ts';
import { DEFAULT_BEHAVIOUR } from './behaviour.ts';
import type { DemoBehaviour } from './behaviour.ts';
import { createEchoHandler } from './echo-handler.ts';
import type { EchoContext } from './echo-handler.ts';
import { sniffProtocol } from './protocol-sniff.ts';

/** Options of EchoServer.create(). */
export interface EchoServerOptions {
  port: number;
  /** Default 0.0.0.0: a pod answers on its own IP. */
  host?: string;
  identity: PodIdentity;
  behaviour?: DemoBehaviour;
  /** Answer every non-special request with this many bytes instead of the JSON echo. */
  bodyBytes?: number;
  log: Logger;
  /** Injected for deterministic fail-rate tests. */
  random?: () => number;
  /** Injected for latency tests. */
  delay?: (ms: number) => Promise<void>;
  /** HTTP/1.1 header limit; beyond it the answer is 431. Default 16 KiB. */
  maxHeaderSize?: number;
  /** HTTP/1.1 request headers must be complete within this time, else 408. Default 30 s. */
  headersTimeoutMs?: number;
  /** A connection must send its first bytes within this time. Default 10 s. */
  sniffTimeoutMs?: number;
  /** Idle connections are closed after this. Default 120 s. */
  idleTimeoutMs?: number;
}

// Longer than any load balancer's idle timeout in the lab, so the client side closes first.
const KEEP_ALIVE_MS = 65_000;

const sleep = (ms: number): Promise<void> =>
  new Promise((resolve) => { setTimeout(resolve, ms).unref(); });

/** A running echo server; `close()` drains and is idempotent. */
export class EchoServer {
  readonly #server: net.Server;
  readonly #h1: http.Server;
  readonly #h2: http2.Http2Server;
  readonly #ctx: EchoContext;
  readonly #log: Logger;
  readonly #sockets = new Set<net.Socket>();
  readonly #sessions = new Set<http2.ServerHttp2Session>();
  /** HTTP/1 connections -> requests in flight; idle ones are closed at shutdown. */
  readonly #h1InFlight = new Map<net.Socket, number>();
  /** Accepted connections that have not sent enough bytes to pick a protocol yet. */
  readonly #sniffing = new Set<net.Socket>();
  #closing: Promise<void> | undefined;
  #port = 0;

  private constructor(o: EchoServerOptions) {
    this.#log = o.log;
    this.#ctx = {
      identity: o.identity,
      bodyBytes: o.bodyBytes,
      log: o.log,
      random: o.random ?? Math.random,
      delay: o.delay ?? sleep,
      behaviour: o.behaviour ?? DEFAULT_BEHAVIOUR,
      draining: () => this.#closing !== undefined,
    };
    const handler = createEchoHandler(this.#ctx);
    const idle = o.idleTimeoutMs ?? 120_000;

    const headersTimeout = o.headersTimeoutMs ?? 30_000;
    this.#h1 = http.createServer({
      maxHeaderSize: o.maxHeaderSize ?? 16 * 1024, noDelay: true, headersTimeout, requestTimeout: 300_000,
      connectionsCheckingInterval: Math.min(1_000, headersTimeout),
    }, handler);
    // Node enforces headersTimeout/requestTimeout (slow-drip clients get 408) from a checker
    // it starts on 'listening'; this server never listens itself, so start it explicitly.
    // A test pins this behaviour so a Node change cannot silently remove it.
    this.#h1.emit('listening');
    this.#h1.keepAliveTimeout = KEEP_ALIVE_MS;
    this.#h1.timeout = idle;
    // Own bookkeeping rather than closeIdleConnections(): Node only tracks connections of
    // HTTP servers that listen themselves, and this one is fed sockets by hand.
    this.#h1.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      const sock = req.socket;
      this.#h1InFlight.set(sock, (this.#h1InFlight.get(sock) ?? 0) + 1);
      res.once('close', () => {
        const left = (this.#h1InFlight.get(sock) ?? 1) - 1;
        if (!this.#h1InFlight.has(sock)) return;
        this.#h1InFlight.set(sock, left);
        if (left === 0 && this.#closing !== undefined) sock.end();
      });
    });
    this.#h1.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      this.#log.debug('bad HTTP/1 request', { err: err.message, code: err.code });
      if (err.code === 'ECONNRESET' || !socket.writable) { socket.destroy(); return; }
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large'
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
      socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`, () => socket.destroy());
    });

    this.#h2 = http2.createServer({ maxSessionMemory: 64 }, handler);
    this.#h2.setTimeout(idle);
    this.#h2.on('session', (s) => {
      this.#sessions.add(s);
      s.once('close', () => this.#sessions.delete(s));
      s.on('error', (e: Error) => this.#log.debug('HTTP/2 session error', { err: e.message }));
    });
    this.#h2.on('sessionError', (e: Error) => this.#log.debug('HTTP/2 session error', { err: e.message }));

    this.#server = net.createServer({ noDelay: true, keepAlive: true }, (s) => this.#accept(s, o.sniffTimeoutMs ?? 10_000));
  }

  /** Binds the port (fails loudly, e.g. when it is taken) and starts serving. */
  static async create(o: EchoServerOptions): Promise<EchoServer> {
    const s = new EchoServer(o);
    const host = o.host ?? '0.0.0.0';
    await new Promise<void>((resolve, reject) => {
      const onError = (e: NodeJS.ErrnoException): void => reject(new RondoError('RONDO_E_LISTEN',
        `demo echo server cannot listen on ${host}:${o.port}: ${e.message} (is the port taken or the address not on this pod?)`, { cause: e }));
      s.#server.once('error', onError);
      s.#server.listen(o.port, host, () => { s.#server.off('error', onError); resolve(); });
    });
    s.#server.on('error', (e) => s.#log.error('listener error', { err: e }));
    const addr = s.#server.address();
    s.#port = typeof addr === 'object' && addr !== null ? addr.port : o.port;
    return s;
  }

  /** The bound port (useful with port 0). */
  get port(): number { return this.#port; }

  /** The current failure/latency switches. */
  get behaviour(): DemoBehaviour { return this.#ctx.behaviour; }

  /** Replaces the switches (the same as `POST /_demo/config`). */
  setBehaviour(b: DemoBehaviour): void { this.#ctx.behaviour = b; }

  #accept(socket: net.Socket, sniffTimeoutMs: number): void {
    this.#sockets.add(socket);
    this.#sniffing.add(socket);
    socket.once('close', () => { this.#sockets.delete(socket); this.#sniffing.delete(socket); this.#h1InFlight.delete(socket); });
    socket.on('error', (e) => this.#log.debug('connection error', { err: e.message }));
    if (this.#closing !== undefined) { socket.destroy(); return; }
    // A named listener, removed at hand-off: the HTTP servers arm their own socket timeouts.
    const onSniffTimeout = (): void => { socket.destroy(); };
    socket.setTimeout(sniffTimeoutMs);
    socket.once('timeout', onSniffTimeout);
    let seen: Buffer | undefined;
    const onData = (chunk: Buffer): void => {
      seen = seen === undefined ? chunk : Buffer.concat([seen, chunk]);
      const kind = sniffProtocol(seen);
      if (kind === 'need-more') return;
      socket.off('data', onData);
      this.#sniffing.delete(socket);
      socket.pause();
      socket.setTimeout(0);
      socket.off('timeout', onSniffTimeout);
      // Both servers read what was unshifted before new bytes from the kernel.
      socket.unshift(seen);
      try {
        if (kind === 'h2') {
          this.#h2.emit('connection', socket);
        } else {
          this.#h1InFlight.set(socket, 0);
          this.#h1.emit('connection', socket);
          // The HTTP/1 parser reads the kernel socket natively and never looks at the
          // stream's buffer: resuming replays the unshifted bytes through its 'data' listener.
          socket.resume();
        }
      } catch (e) {
        this.#log.warn('hand-off failed', { err: errorMessage(e) });
        socket.destroy();
      }
    };
    socket.on('data', onData);
  }

  /**
   * Stops accepting, asks HTTP/2 clients to go away (GOAWAY), closes idle HTTP/1.1
   * connections and answers in-flight ones with `connection: close`; whatever is still open
   * after `drainMs` is destroyed. Idempotent.
   */
  close(drainMs = 5_000): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      const timer = setTimeout(() => { for (const s of this.#sockets) s.destroy(); }, drainMs);
      timer.unref();
      this.#server.close(() => { clearTimeout(timer); resolve(); });
      this.#h1.close(); // stops the timeout checker started in the constructor
      for (const [sock, n] of this.#h1InFlight) if (n === 0) sock.end();
      for (const s of this.#sessions) s.close();
      // Still sniffing: nothing in flight to wait for.
      for (const s of this.#sniffing) s.destroy();
    });
    return this.#closing;
  }
}
