/**
 * The push server: WebSocket over TLS on :15012. Authenticates proxies at the upgrade,
 * expects a Hello naming the same proxy, sends a snapshot (or a delta when the proxy resumes
 * from a version this process remembers), then one delta per published version.
 *
 * Each connection has at most one message in flight: while a proxy has not answered, newer
 * versions only mark it "behind", and on its ACK/NACK it gets one delta straight to the
 * latest view. A slow or stuck proxy therefore costs one pending flag, never a queue, and
 * never delays anyone else (sends are not awaited).
 */
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { WebSocketServer, WebSocket } from 'ws';
import { inflateSync } from 'node:zlib';
import { COMPRESS_MIN_BYTES, FRAME_ENCODING, FRAME_ENCODING_HEADER, ProxyMessage, PUSH_PATH, deflateMessage, describeZodError } from '../../common/wire.ts';
import type { ProxyIdentity, Rejection } from '../../common/wire.ts';
import type { Logger } from '../../common/log.ts';
import { realClock } from '../../common/clock.ts';
import type { Clock, TimerHandle } from '../../common/clock.ts';
import { RondoError, errorMessage } from '../../common/errors.ts';
import { proxyKey } from './auth.ts';
import type { Authenticator } from './auth.ts';
import { diffViews, heldView, viewResources } from './view.ts';
import { FrameWriter } from './frame-writer.ts';
import type { ProxyView } from './view.ts';
import type { ControllerMetrics } from '../metrics.ts';

/** Largest proxy -> controller message (hello, ack, nack, csr); bigger ones close with 1009. */
export const MAX_PROXY_MESSAGE_BYTES = 1024 * 1024;

/** Options of the push server. */
export interface PushServerOptions {
  host: string;
  /** 15012 in production; 0 in tests. */
  port: number;
  /** Serving key and chain (leaf first). */
  tls: { keyPem: string; chain: string[] };
  authenticator: Authenticator;
  /** The current view for a proxy, or undefined when the proxy is unknown to the model. */
  viewFor: (proxy: ProxyIdentity) => ProxyView;
  /** Authorizes and signs a CSR for `proxy`; rejects with a reason to refuse. */
  signCsr?: (proxy: ProxyIdentity, identity: string, csrPem: string) => Promise<string[]>;
  log: Logger;
  metrics: ControllerMetrics;
  now?: () => number;
  /** Hello deadline, ping and shutdown timers (default the real clock; `now` defaults to it too). */
  clock?: Clock;
  /** Distinguishes this controller process in nonces (random by default). */
  instanceId?: string;
  /** Time a proxy has to send its Hello (default 10 s). */
  helloTimeoutMs?: number;
  /** Ping interval to detect dead peers (default 20 s). */
  pingIntervalMs?: number;
  /**
   * Snapshots in flight at once (default 16). After a controller restart every proxy wants
   * a full snapshot; unbounded, that is proxies × snapshot size of TLS buffers at once.
   */
  maxConcurrentSnapshots?: number;
}

/** One row of /debug/proxies. */
export interface ProxyStatus {
  proxy: string;
  remote: string;
  connectedAt: string;
  version: number | null;
  ackedVersion: number | null;
}

/**
 * One serialized message, shared by every proxy that needs exactly it: a big one is held
 * only compressed (the text form is made on demand for proxies that cannot inflate).
 */
interface Encoded {
  nonce: string;
  text: Buffer | undefined;
  deflated: Buffer | undefined;
}

/** Encodes a message once: deflated when big enough to matter, else plain text. */
function encode(nonce: string, msg: Record<string, unknown>): Encoded {
  const json = JSON.stringify(msg);
  return json.length >= COMPRESS_MIN_BYTES
    ? { nonce, text: undefined, deflated: deflateMessage(json) }
    : { nonce, text: Buffer.from(json), deflated: undefined };
}

interface Sent {
  version: number;
  nonce: string;
  view: ProxyView;
  /** The view a delta was computed from (undefined for a snapshot): what a NACK falls back to. */
  from: ProxyView | undefined;
  publishedAt: number;
}

/** Stands for "no base" (a snapshot) as a WeakMap key. */
const SNAPSHOT_BASE = {};

interface Conn {
  ws: WebSocket;
  /** Every message to the proxy goes through here (ordered, paced fragments). */
  out: FrameWriter;
  proxy: ProxyIdentity;
  key: string;
  remote: string;
  connectedAt: number;
  /** The proxy reads compressed binary frames (its upgrade request said so). */
  deflate: boolean;
  helloed: boolean;
  /** What the proxy holds once it answers the in-flight message (or holds now). */
  sent: Sent | undefined;
  inFlight: boolean;
  /** The in-flight message is a snapshot (counts against maxConcurrentSnapshots). */
  snapshotInFlight: boolean;
  behind: boolean;
  ackedVersion: number | undefined;
  alive: boolean;
}

/** Serves configuration pushes and CSR signing to proxies. */
export class PushServer {
  readonly #o: PushServerOptions;
  readonly #https: https.Server;
  readonly #wss: WebSocketServer;
  readonly #conns = new Set<Conn>();
  readonly #memory = new Map<string, { version: number; view: ProxyView }>();
  readonly #instance: string;
  readonly #now: () => number;
  #version = 0;
  #publishedAt = 0;
  #snapshotsInFlight = 0;
  readonly #snapshotQueue = new Set<Conn>();
  #snapshotCache = new Map<ProxyView, Encoded>();
  #deltaCache = new Map<ProxyView, Map<ProxyView, Encoded | null>>();
  /** Held views after NACKs, by (sent view, base, refused keys): agents refusing alike share one. */
  readonly #heldCache = new WeakMap<ProxyView, WeakMap<object, Map<string, ProxyView | undefined>>>();
  readonly #clock: Clock;
  #ping: TimerHandle | undefined;
  #closing: Promise<void> | undefined;

  private constructor(o: PushServerOptions, server: https.Server) {
    this.#o = o;
    this.#https = server;
    this.#clock = o.clock ?? realClock;
    const clock = this.#clock;
    this.#now = o.now ?? (() => clock.now());
    this.#instance = o.instanceId ?? randomBytes(4).toString('hex');
    this.#wss = new WebSocketServer({ noServer: true, maxPayload: MAX_PROXY_MESSAGE_BYTES });
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      void this.#upgrade(req, socket, head);
    });
    server.on('request', (_req, res) => {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`push endpoint is a WebSocket at ${PUSH_PATH}\n`);
    });
    this.#ping = this.#clock.setInterval(() => this.#heartbeat(), o.pingIntervalMs ?? 20_000);
    this.#ping.unref();
  }

  /** Binds the TLS listener; fails loudly if the address is taken or the cert is bad. */
  static async create(o: PushServerOptions): Promise<PushServer> {
    let server: https.Server;
    try {
      server = https.createServer({ key: o.tls.keyPem, cert: o.tls.chain.join('\n'), minVersion: 'TLSv1.3' });
    } catch (e) {
      throw new RondoError('RONDO_E_PUSH_TLS', `push server TLS setup failed: ${errorMessage(e)} (check the serving key/cert from the CA)`);
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) => reject(new RondoError('RONDO_E_LISTEN', `cannot listen on ${o.host}:${o.port} for the push server: ${errorMessage(e)}`)));
      server.listen(o.port, o.host, () => resolve());
    });
    return new PushServer(o, server);
  }

  /** The bound address (the port matters when 0 was asked for). */
  get address(): { host: string; port: number } {
    const a = this.#https.address();
    if (a === null || typeof a === 'string') throw new RondoError('RONDO_E_NOT_READY', 'push server is not listening');
    return { host: a.address, port: a.port };
  }

  /** Latest published version (0 before the first). */
  get version(): number {
    return this.#version;
  }

  /** Number of proxies that completed their Hello. */
  get connectedCount(): number {
    let n = 0;
    for (const c of this.#conns) if (c.helloed) n++;
    return n;
  }

  /** Announces a new version: every connected proxy gets (or will get) a delta to its view. */
  publish(version: number): void {
    if (version <= this.#version) throw new RondoError('RONDO_E_VERSION', `version ${version} is not above ${this.#version}`);
    this.#version = version;
    this.#publishedAt = this.#now();
    this.#snapshotCache = new Map();
    this.#deltaCache = new Map();
    this.#o.metrics.configVersion.set(version);
    for (const c of this.#conns) {
      if (!c.helloed) continue;
      if (c.inFlight) {
        if (c.behind) this.#o.metrics.coalesced.inc();
        c.behind = true;
        continue;
      }
      this.#sendLatest(c);
    }
  }

  /** Status of connected proxies, for /debug/proxies. */
  proxies(): ProxyStatus[] {
    return [...this.#conns].filter((c) => c.helloed).map((c) => ({
      proxy: c.key,
      remote: c.remote,
      connectedAt: new Date(c.connectedAt).toISOString(),
      version: c.sent?.version ?? null,
      ackedVersion: c.ackedVersion ?? null,
    }));
  }

  /** Closes every connection and the listener; idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#clock.clearInterval(this.#ping);
      for (const c of this.#conns) c.ws.close(1001, 'controller shutting down');
      const deadline = this.#clock.setTimeout(() => { for (const c of this.#conns) c.ws.terminate(); }, 1000);
      await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
      await new Promise<void>((resolve) => {
        this.#https.close(() => resolve());
        this.#https.closeAllConnections();
      });
      this.#clock.clearTimeout(deadline);
    })();
    return this.#closing;
  }

  async #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const remote = `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? 0}`;
    const path = (req.url ?? '').split('?')[0];
    if (path !== PUSH_PATH) {
      socket.end(`HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\n\r\nno push endpoint at ${path}; use ${PUSH_PATH}\n`);
      return;
    }
    const authz = req.headers.authorization;
    const token = authz?.startsWith('Bearer ') === true ? authz.slice(7).trim() : undefined;
    let proxy: ProxyIdentity;
    try {
      proxy = await this.#o.authenticator.authenticate({ token, remoteAddress: remote });
    } catch (e) {
      this.#o.metrics.authFailures.inc();
      this.#o.log.warn('push connection refused', { remote, reason: errorMessage(e) });
      socket.end(`HTTP/1.1 401 Unauthorized\r\ncontent-type: text/plain\r\n\r\n${errorMessage(e)}\n`);
      return;
    }
    if (this.#closing !== undefined) {
      socket.destroy();
      return;
    }
    const enc = req.headers[FRAME_ENCODING_HEADER];
    const deflate = typeof enc === 'string' && enc.split(',').some((e) => e.trim() === FRAME_ENCODING);
    this.#wss.handleUpgrade(req, socket, head, (ws) => this.#accept(ws, proxy, remote, deflate));
  }

  #accept(ws: WebSocket, proxy: ProxyIdentity, remote: string, deflate: boolean): void {
    const c: Conn = {
      ws, out: new FrameWriter(ws), proxy, key: proxyKey(proxy), remote, connectedAt: this.#now(), deflate, helloed: false,
      sent: undefined, inFlight: false, snapshotInFlight: false, behind: false, ackedVersion: undefined, alive: true,
    };
    this.#conns.add(c);
    const log = this.#o.log;
    const helloTimer = this.#clock.setTimeout(() => {
      if (!c.helloed) this.#refuse(c, 'invalid', 'no hello within the timeout');
    }, this.#o.helloTimeoutMs ?? 10_000);
    ws.on('pong', () => { c.alive = true; });
    ws.on('message', (data, isBinary) => {
      c.alive = true;
      if (isBinary) return this.#refuse(c, 'binary', 'binary frames are not part of the protocol');
      this.#onMessage(c, rawText(data));
    });
    ws.on('error', (err) => {
      const code = (err as { code?: string }).code;
      if (code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') this.#o.metrics.invalidMessages.inc({ reason: 'oversized' });
      log.warn('push connection error', { proxy: c.key, remote, err });
    });
    ws.on('close', (code, reason) => {
      this.#clock.clearTimeout(helloTimer);
      this.#conns.delete(c);
      this.#snapshotDone(c);
      if (c.helloed) this.#o.metrics.connectedProxies.dec({ kind: proxy.kind });
      log.info('proxy disconnected', { proxy: c.key, remote, code, reason: reason.toString() });
    });
  }

  #refuse(c: Conn, reason: string, detail: string): void {
    this.#o.metrics.invalidMessages.inc({ reason });
    this.#o.log.warn('closing push connection', { proxy: c.key, remote: c.remote, reason: detail });
    c.ws.close(1008, detail.slice(0, 120));
  }

  #onMessage(c: Conn, text: string): void {
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      return this.#refuse(c, 'json', 'message is not JSON');
    }
    const r = ProxyMessage.safeParse(raw);
    if (!r.success) return this.#refuse(c, 'schema', `malformed message: ${describeZodError(r.error)}`);
    const msg = r.data;
    switch (msg.type) {
      case 'hello': {
        if (c.helloed) return this.#refuse(c, 'protocol', 'second hello on one connection');
        if (proxyKey(msg.proxy) !== c.key) {
          this.#o.metrics.authFailures.inc();
          return this.#refuse(c, 'identity', `hello says ${proxyKey(msg.proxy)} but the token belongs to ${c.key}`);
        }
        c.helloed = true;
        this.#o.metrics.connectedProxies.inc({ kind: c.proxy.kind });
        const mem = this.#memory.get(c.key);
        if (msg.lastVersion !== undefined && mem !== undefined && mem.version === msg.lastVersion) {
          // Resume: the proxy holds exactly the view we remember, so a delta suffices.
          c.sent = { version: mem.version, nonce: '', view: mem.view, from: undefined, publishedAt: this.#now() };
        }
        this.#o.log.info('proxy connected', { proxy: c.key, remote: c.remote, lastVersion: msg.lastVersion, resume: c.sent !== undefined });
        if (this.#version > 0) this.#sendLatest(c, this.#now());
        return;
      }
      case 'ack':
      case 'nack': {
        if (!c.helloed) return this.#refuse(c, 'protocol', `${msg.type} before hello`);
        const s = c.sent;
        if (s === undefined || !c.inFlight || s.nonce !== msg.nonce || s.version !== msg.version) {
          this.#o.log.debug('stale ack/nack ignored', { proxy: c.key, version: msg.version });
          return;
        }
        c.inFlight = false;
        this.#snapshotDone(c);
        this.#o.metrics.pushLatency.observe((this.#now() - s.publishedAt) / 1000);
        if (msg.type === 'ack') {
          this.#o.metrics.acks.inc();
          c.ackedVersion = msg.version;
        } else {
          for (const rj of msg.rejected) this.#o.metrics.nacks.inc({ type: rj.type });
          this.#o.log.warn('proxy rejected resources', { proxy: c.key, version: msg.version, rejected: msg.rejected.slice(0, 20) });
        }
        // After a NACK the proxy holds the rest of that version and, for what it refused,
        // what it had before: that is its base, so the refused parts go out again with the
        // next change (never at once: the same refusal would loop).
        const held = msg.type === 'ack' ? s.view : this.#held(s, msg.rejected);
        if (held === undefined) {
          // Not knowable here (e.g. a snapshot's mesh refused): the next push is a snapshot.
          c.sent = undefined;
          this.#memory.delete(c.key);
        } else {
          c.sent = { ...s, view: held };
          this.#memory.set(c.key, { version: s.version, view: held });
        }
        if (c.behind) {
          c.behind = false;
          this.#sendLatest(c);
        }
        return;
      }
      case 'csr': {
        if (!c.helloed) return this.#refuse(c, 'protocol', 'csr before hello');
        void this.#sign(c, msg.id, msg.identity, msg.csr);
        return;
      }
    }
  }

  async #sign(c: Conn, id: string, identity: string, csr: string): Promise<void> {
    const reply = (body: { chain?: string[]; error?: string }): void => {
      if (c.ws.readyState === WebSocket.OPEN) c.out.send(Buffer.from(JSON.stringify({ type: 'cert', id, ...body })), false);
    };
    if (this.#o.signCsr === undefined) {
      this.#o.metrics.csrs.inc({ result: 'refused' });
      reply({ error: 'this controller has no CA configured' });
      return;
    }
    try {
      const chain = await this.#o.signCsr(c.proxy, identity, csr);
      this.#o.metrics.csrs.inc({ result: 'signed' });
      this.#o.log.info('signed certificate', { proxy: c.key, identity });
      reply({ chain });
    } catch (e) {
      this.#o.metrics.csrs.inc({ result: 'refused' });
      this.#o.log.warn('refused CSR', { proxy: c.key, identity, reason: errorMessage(e) });
      reply({ error: errorMessage(e) });
    }
  }

  /** Sends the proxy what brings it to the latest version (a snapshot if it has nothing). */
  #sendLatest(c: Conn, publishedAt = this.#publishedAt): void {
    if (c.ws.readyState !== WebSocket.OPEN) return;
    let view: ProxyView;
    try {
      view = this.#o.viewFor(c.proxy);
    } catch (e) {
      this.#o.log.error('cannot build view for proxy', { proxy: c.key, err: e instanceof Error ? e : errorMessage(e) });
      return;
    }
    // Proxies with the same (from, to) views share one encoded message, nonce included:
    // 100 node agents cost one JSON.stringify and one Buffer, not 100.
    let msg: Encoded | null | undefined;
    let type: 'snapshot' | 'delta';
    if (c.sent === undefined) {
      if (this.#snapshotsInFlight >= (this.#o.maxConcurrentSnapshots ?? 16)) {
        this.#snapshotQueue.add(c); // sent (at the then-latest version) when a slot frees
        return;
      }
      type = 'snapshot';
      msg = this.#snapshotCache.get(view);
      if (msg === undefined) {
        const nonce = this.#nonce();
        msg = encode(nonce, { type: 'snapshot', version: this.#version, nonce, mesh: view.mesh, resources: viewResources(view) });
        this.#snapshotCache.set(view, msg);
      }
    } else {
      type = 'delta';
      const from = c.sent.view;
      let byTo = this.#deltaCache.get(from);
      if (byTo === undefined) {
        byTo = new Map();
        this.#deltaCache.set(from, byTo);
      }
      msg = byTo.get(view);
      if (msg === undefined) {
        const d = diffViews(from, view);
        const nonce = this.#nonce();
        msg = d.size === 0 && d.mesh === undefined
          ? null
          : encode(nonce, { type: 'delta', version: this.#version, nonce, ...(d.mesh !== undefined ? { mesh: d.mesh } : {}), upserts: d.upserts, removes: d.removes });
        byTo.set(view, msg);
      }
      // Nothing changed for this proxy: it keeps its version, no message needed.
      if (msg === null) return;
    }
    c.sent = { version: this.#version, nonce: msg.nonce, view, from: type === 'delta' ? c.sent?.view : undefined, publishedAt };
    c.inFlight = true;
    if (type === 'snapshot') {
      c.snapshotInFlight = true;
      this.#snapshotsInFlight++;
    }
    c.behind = false;
    this.#o.metrics.pushes.inc({ type });
    if (c.deflate && msg.deflated !== undefined) {
      this.#o.metrics.pushBytes.inc({ encoding: 'deflate' }, msg.deflated.length);
      c.out.send(msg.deflated, true);
      return;
    }
    // An older proxy: text, inflated once per message and then shared like the rest.
    msg.text ??= inflateSync(msg.deflated ?? Buffer.alloc(0));
    this.#o.metrics.pushBytes.inc({ encoding: 'text' }, msg.text.length);
    c.out.send(msg.text, false);
  }

  /** Frees c's snapshot slot (on its answer or its close) and starts the next waiting one. */
  #snapshotDone(c: Conn): void {
    this.#snapshotQueue.delete(c);
    if (!c.snapshotInFlight) return;
    c.snapshotInFlight = false;
    this.#snapshotsInFlight--;
    for (const next of this.#snapshotQueue) {
      this.#snapshotQueue.delete(next);
      if (next.ws.readyState !== WebSocket.OPEN) continue;
      this.#sendLatest(next, this.#now());
      if (next.snapshotInFlight) break;
    }
  }

  #held(s: Sent, rejected: readonly Rejection[]): ProxyView | undefined {
    const sig = JSON.stringify(rejected.map((r) => [r.type, r.key]).sort());
    const base = s.from ?? SNAPSHOT_BASE;
    let byBase = this.#heldCache.get(s.view);
    if (byBase === undefined) this.#heldCache.set(s.view, (byBase = new WeakMap<object, Map<string, ProxyView | undefined>>()));
    let bySig = byBase.get(base);
    if (bySig === undefined) byBase.set(base, (bySig = new Map<string, ProxyView | undefined>()));
    if (!bySig.has(sig)) bySig.set(sig, heldView(s.from, s.view, rejected));
    return bySig.get(sig);
  }

  #nonce(): string {
    return `${this.#instance}-${randomBytes(6).toString('hex')}`;
  }

  #heartbeat(): void {
    for (const c of this.#conns) {
      if (!c.alive) {
        this.#o.log.warn('proxy stopped answering pings; terminating', { proxy: c.key, remote: c.remote });
        c.ws.terminate();
        continue;
      }
      c.alive = false;
      c.ws.ping();
    }
  }
}

/** Text of a ws frame (Buffer, fragments or ArrayBuffer). */
function rawText(data: WebSocket.RawData): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data).toString('utf8');
}
