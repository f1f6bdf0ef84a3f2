/**
 * The waypoint's data path: HBONE tunnels in, protocol detection, HTTP/1.1 and HTTP/2 (gRPC)
 * request handling with Node's own parsers, the dispatch decision (dispatch.ts), and the
 * upstream attempt with its timeouts, response filters, metrics and access log.
 *
 * Per tunnel: the CONNECT's `:authority` names a service VIP:port (or a pod bound to this
 * waypoint). The tunnel is accepted, then the first bytes decide: the HTTP/2 preface → the
 * HTTP/2 server, an HTTP/1 method → the HTTP/1 server, anything else (or nothing within
 * `detectTimeoutMs`, as server-first protocols do) → opaque TCP to an endpoint. A Service
 * port's `appProtocol` skips detection. The servers never listen: tunnels are handed to them
 * with `emit('connection', stream)`, so Node's HTTP parsers (llhttp, nghttp2) do the parsing
 * and framing checks, which include the request-smuggling cases (conflicting Content-Length
 * and Transfer-Encoding, bad chunking, bad header bytes: 400 and the connection closed).
 */
import http from 'node:http';
import http2 from 'node:http2';
import { Duplex } from 'node:stream';
import type { Logger } from '../common/log.ts';
import { RondoError, errorMessage } from '../common/errors.ts';
import type { ErrorCode } from '../common/errors.ts';
import { acceptTunnel, refuseTunnel, pump } from '../common/hbone.ts';
import type { InboundTunnel } from '../common/hbone.ts';
import { EndpointPicker, endpointKey } from '../common/endpoint-picker.ts';
import { tryParseSpiffeId } from '../common/spiffe.ts';
import { UNKNOWN, requestLabels } from '../common/istio-labels.ts';
import type { AccessLog } from '../common/access-log.ts';
import { realClock } from '../common/clock.ts';
import type { Clock, TimerHandle } from '../common/clock.ts';
import { keyOf } from '../common/resources.ts';
import type { Service, Workload } from '../common/wire.ts';
import type { EndpointTarget, WaypointState, TunnelTarget } from './state.ts';
import { authzTargetOf, dispatch, GRPC_STATUS } from './dispatch.ts';
import type { Caller, Forward, LocalReply, DispatchRequest } from './dispatch.ts';
import { applyHeaderFilter } from './filters.ts';
import type { HeaderMap } from './filters.ts';
import type { Upstreams, UpstreamEndpoint } from './upstream.ts';
import type { WaypointMetrics } from './metrics.ts';

/** One access-log line per request (or opaque connection). */
export interface RequestRecord {
  kind: 'request' | 'tcp';
  protocol: 'http' | 'grpc' | 'tcp';
  method?: string;
  path?: string;
  authority?: string;
  status?: number;
  grpcStatus?: number;
  code?: ErrorCode;
  reason?: string;
  source?: string;
  service?: string;
  upstream?: string;
  route?: string;
  policy?: string;
  audited?: string[];
  bytesIn: number;
  bytesOut: number;
  durationMs: number;
}

/** Options of WaypointProxy. */
export interface ProxyOptions {
  log: Logger;
  metrics: WaypointMetrics;
  upstreams: Upstreams;
  accessLog?: AccessLog<RequestRecord>;
  clock?: Clock;
  /** [0, 1) for weighted backends, mirrors and the endpoint picker (tests inject one). */
  random?: () => number;
  /** How long a tunnel may stay silent before it counts as opaque TCP (default 300 ms). */
  detectTimeoutMs?: number;
  /** Largest request header block (default 16 KiB, as Node and the HBONE server). */
  maxHeaderBytes?: number;
  /** Idle time after which a client's keep-alive connection is closed (default 60 s). */
  keepAliveTimeoutMs?: number;
}

interface TunnelCtx {
  ip: string;
  port: number;
  caller: Caller;
}

const HTTP2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
// An HTTP/1 request line starts with a method token (RFC 9110 tchar, upper-case in practice) and a space.
const HTTP1_START = /^[A-Z][A-Z-]{0,19} /;

/** How a tunnel's bytes are read. */
export type Detected = 'http1' | 'http2' | 'opaque';

/** Decides the protocol from the first bytes; undefined: not enough bytes yet. Pure. */
export function detectProtocol(first: Buffer): Detected | undefined {
  const n = Math.min(first.length, HTTP2_PREFACE.length);
  if (first.subarray(0, n).equals(HTTP2_PREFACE.subarray(0, n))) return n === HTTP2_PREFACE.length ? 'http2' : undefined;
  const head = first.subarray(0, 21).toString('latin1');
  if (HTTP1_START.test(head)) return 'http1';
  // Still only method characters: the space may come in the next chunk.
  if (/^[A-Z-]{1,20}$/.test(head) && head.length < 21) return undefined;
  return 'opaque';
}

/** The protocol a Service port's appProtocol fixes, if it does (Kubernetes and Istio spellings). */
export function protocolOfAppProtocol(appProtocol: string | undefined): Detected | undefined {
  switch (appProtocol?.toLowerCase()) {
    case 'http': case 'http1': case 'http/1.1': return 'http1';
    case 'http2': case 'h2c': case 'kubernetes.io/h2c': case 'grpc': return 'http2';
    case 'tcp': return 'opaque';
    default: return undefined;
  }
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'host', 'http2-settings']);

/** Request headers to forward: hop-by-hop and pseudo-headers dropped (`te: trailers` kept for HTTP/2). */
export function forwardableHeaders(h: http.IncomingHttpHeaders, keepTeTrailers: boolean): HeaderMap {
  const out: HeaderMap = {};
  // Headers named in Connection are hop-by-hop too (RFC 9110 §7.6.1).
  const named = typeof h.connection === 'string' ? h.connection.toLowerCase().split(',').map((s) => s.trim()) : [];
  for (const k in h) {
    if (k.charCodeAt(0) === 58 /* : */ || HOP_BY_HOP.has(k) || named.includes(k)) continue;
    out[k] = h[k];
  }
  if (keepTeTrailers && typeof h.te === 'string' && h.te.toLowerCase().includes('trailers')) out['te'] = 'trailers';
  return out;
}

/** Response headers to pass back: hop-by-hop and pseudo-headers dropped. */
function responseHeaders(h: http.IncomingHttpHeaders | http2.IncomingHttpHeaders): HeaderMap {
  const out: HeaderMap = {};
  for (const k in h) {
    if (k.charCodeAt(0) === 58 || HOP_BY_HOP.has(k)) continue;
    out[k] = h[k];
  }
  return out;
}

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

/** One request's bookkeeping until its response ends. */
interface Exchange {
  started: number;
  protocol: 'http' | 'grpc';
  req: Req;
  res: Res;
  ctx: TunnelCtx;
  bytesIn: number;
  bytesOut: number;
  status: number;
  grpcStatus: number | undefined;
  code: ErrorCode | undefined;
  reason: string | undefined;
  service: Service | undefined;
  destination: Workload | undefined;
  upstream: string | undefined;
  route: string | undefined;
  policy: string | undefined;
  audited: string[] | undefined;
  done: boolean;
  timer: TimerHandle | undefined;
}

/** The waypoint's request path. `setState()` swaps the config; `close()` stops taking tunnels. */
export class WaypointProxy {
  readonly #o: ProxyOptions;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #picker: EndpointPicker;
  readonly #h1: http.Server;
  readonly #h2: http2.Http2Server;
  readonly #ctx = new WeakMap<object, TunnelCtx>();
  readonly #exchanges = new WeakMap<object, Exchange>();
  readonly #byIdentity = new WeakMap<WaypointState, Map<string, Workload>>();
  #pendingH2: TunnelCtx | undefined;
  #state: WaypointState | undefined;
  #closed = false;
  readonly #tunnels = new Set<Duplex>();

  constructor(o: ProxyOptions) {
    this.#o = o;
    this.#clock = o.clock ?? realClock;
    this.#random = o.random ?? Math.random;
    this.#picker = new EndpointPicker({ random: this.#random });
    this.#h1 = http.createServer({ maxHeaderSize: o.maxHeaderBytes ?? 16 * 1024, keepAliveTimeout: o.keepAliveTimeoutMs ?? 60_000, requestTimeout: 0 }, (req, res) => this.#onRequest(req, res));
    this.#h1.on('clientError', (e: Error & { code?: string }, socket: Duplex) => this.#onClientError(e, socket));
    this.#h1.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.#onUpgrade(req, socket, head));
    this.#h2 = http2.createServer({ maxSessionMemory: 32, settings: { enablePush: false, maxHeaderListSize: o.maxHeaderBytes ?? 16 * 1024 } });
    this.#h2.on('request', (req, res) => this.#onRequest(req, res));
    this.#h2.on('session', (session: http2.ServerHttp2Session) => {
      if (this.#pendingH2 !== undefined) this.#ctx.set(session, this.#pendingH2);
      session.on('error', (e) => this.#o.log.debug('downstream HTTP/2 session error', { error: e }));
    });
    this.#h2.on('sessionError', (e) => this.#o.log.debug('downstream HTTP/2 session error', { error: e }));
  }

  /** Serves `state` from now on (requests in flight finish with what they chose). */
  setState(state: WaypointState): void {
    this.#state = state;
  }

  /** Tunnels open now. */
  get openTunnels(): number { return this.#tunnels.size; }

  /** HboneServer handler: accepts a CONNECT for a service or pod this waypoint serves. */
  onTunnel(t: InboundTunnel): void {
    const state = this.#state;
    if (this.#closed) { this.#refuse(t, 503, 'closed', 'the waypoint is draining'); return; }
    if (state === undefined) { this.#refuse(t, 503, 'no_config', 'the waypoint has no configuration from the controller yet'); return; }
    const r = state.resolve(t.target.ip, t.target.port);
    if (r.kind === 'not-served') { this.#refuse(t, 404, 'not_served', r.reason); return; }
    if (!acceptTunnel(t.stream)) return;
    const stream = t.stream as unknown as Duplex;
    this.#tunnels.add(stream);
    stream.once('close', () => this.#tunnels.delete(stream));
    stream.on('error', () => undefined);
    const caller: Caller = { identity: t.peerIdentity, namespace: t.peerIdentity === undefined ? undefined : tryParseSpiffeId(t.peerIdentity)?.namespace, ip: t.remote.ip };
    const ctx: TunnelCtx = { ip: t.target.ip, port: t.target.port, caller };
    const fixed = r.kind === 'service' ? protocolOfAppProtocol(r.port.appProtocol) : undefined;
    if (fixed !== undefined) { this.#hand(stream, ctx, fixed); return; }
    this.#sniff(stream, ctx);
  }

  #refuse(t: InboundTunnel, status: number, reason: string, message: string): void {
    this.#o.metrics.refused(reason);
    this.#o.log.debug('tunnel refused', { target: `${t.target.ip}:${t.target.port}`, peer: t.peerIdentity, reason: message });
    refuseTunnel(t.stream, status, message);
  }

  #sniff(stream: Duplex, ctx: TunnelCtx): void {
    let seen: Buffer = Buffer.alloc(0);
    const timer = this.#clock.setTimeout(() => finish('opaque'), this.#o.detectTimeoutMs ?? 300);
    const finish = (p: Detected): void => {
      this.#clock.clearTimeout(timer);
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.pause();
      if (seen.length > 0) stream.unshift(seen);
      this.#hand(stream, ctx, p);
    };
    const onData = (chunk: Buffer): void => {
      seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
      const p = detectProtocol(seen);
      if (p !== undefined) finish(p);
      else if (seen.length >= 64) finish('opaque');
    };
    const onEnd = (): void => finish('opaque');
    stream.on('data', onData);
    stream.once('end', onEnd);
  }

  #hand(stream: Duplex, ctx: TunnelCtx, p: Detected): void {
    if (p === 'http1') {
      const sock = new TunnelSocket(stream);
      this.#ctx.set(sock, ctx);
      this.#h1.emit('connection', sock);
    } else if (p === 'http2') {
      this.#pendingH2 = ctx;
      try { this.#h2.emit('connection', stream); } finally { this.#pendingH2 = undefined; }
      stream.resume();
    } else {
      void this.#opaque(stream, ctx);
    }
  }

  // ---- opaque TCP ----

  async #opaque(stream: Duplex, ctx: TunnelCtx): Promise<void> {
    const started = this.#clock.now();
    const state = this.#state;
    const r = state?.resolve(ctx.ip, ctx.port);
    const rec: RequestRecord = { kind: 'tcp', protocol: 'tcp', bytesIn: 0, bytesOut: 0, durationMs: 0, ...(ctx.caller.identity !== undefined ? { source: ctx.caller.identity } : {}) };
    const fail = (code: ErrorCode, reason: string): void => {
      stream.destroy();
      this.#o.accessLog?.({ ...rec, code, reason, durationMs: this.#clock.now() - started });
    };
    if (state === undefined || r === undefined || r.kind === 'not-served') { fail('RONDO_E_NOT_SERVED', r?.kind === 'not-served' ? r.reason : 'no config'); return; }
    const authz = state.authz.authorize(authzTargetOf(state, r), {
      ...(ctx.caller.identity !== undefined ? { sourceIdentity: ctx.caller.identity } : {}), sourceIp: ctx.caller.ip, port: r.kind === 'service' ? r.port.targetPort : r.port,
    });
    if (!authz.allowed) { fail(authz.code, authz.reason); return; }
    const ep = r.kind === 'workload'
      ? { ip: r.workload.ips[0] ?? ctx.ip, port: ctx.port, key: endpointKey(r.workload.ips[0] ?? ctx.ip, ctx.port), workload: r.workload }
      : this.#pickEndpoint(state, r.service, r.port.port);
    if (ep === undefined) { fail('RONDO_E_NO_READY_ENDPOINTS', `service ${r.kind === 'service' ? keyOf(r.service) : ''} port ${ctx.port} has no ready endpoints`); return; }
    let up: Duplex;
    try {
      up = await this.#o.upstreams.connect(upstreamOf(ep));
    } catch (e) {
      fail(e instanceof RondoError ? e.code : 'RONDO_E_UPSTREAM_FAILED', errorMessage(e));
      return;
    }
    const key = ep.key;
    this.#picker.acquire(key);
    const result = await pump(stream, up);
    this.#picker.release(key);
    this.#o.accessLog?.({ ...rec, upstream: key, bytesIn: result.aToB, bytesOut: result.bToA, durationMs: this.#clock.now() - started, ...(result.error !== undefined ? { code: 'RONDO_E_UPSTREAM_RESET' as const, reason: result.error.message } : {}) });
  }

  #pickEndpoint(state: WaypointState, service: Service, port: number): EndpointTarget | undefined {
    const eps = state.endpoints(service, port);
    if (eps.length === 0) return undefined;
    return eps[this.#picker.pick(`${keyOf(service)}:${port}`, state.endpointKeys(service, port))];
  }

  // ---- HTTP ----

  #ctxOf(req: Req): TunnelCtx | undefined {
    if (req instanceof http2.Http2ServerRequest) return this.#ctx.get(req.stream.session as object);
    return this.#ctx.get(req.socket);
  }

  #onClientError(e: Error & { code?: string }, socket: Duplex): void {
    // Malformed HTTP/1: answer 400 (431 for oversized headers) when nothing was sent yet,
    // then close; other clients and tunnels are not affected.
    this.#o.metrics.refused('bad_request');
    this.#o.log.debug('malformed HTTP/1 request', { error: e, code: e.code });
    // Broken framing after the headers were taken (bad chunking): answer that request 400
    // if its response has not started, else cut it; then the connection goes.
    const inFlight = (socket as { _httpMessage?: object | null })._httpMessage ?? undefined;
    const x = inFlight === undefined ? undefined : this.#exchanges.get(inFlight);
    if (x !== undefined) {
      if (!x.res.headersSent) this.#reply(x, { kind: 'reply', status: 400, code: 'RONDO_E_BAD_REQUEST', reason: `malformed request body: ${errorMessage(e)}` });
      (x.res as http.ServerResponse).shouldKeepAlive = false;
      x.res.once('finish', () => socket.destroy());
      if (x.res.headersSent && !x.res.writableFinished) socket.destroy();
      return;
    }
    if (socket.writable && inFlight === undefined) {
      const status = e.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
      const body = `${errorMessage(e)}\n`;
      socket.end(`HTTP/1.1 ${status}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    } else {
      socket.destroy();
    }
  }

  #onRequest(req: Req, res: Res): void {
    const ctx = this.#ctxOf(req);
    const state = this.#state;
    const isH2 = req.httpVersionMajor === 2;
    const ct = req.headers['content-type'];
    const protocol = isH2 && typeof ct === 'string' && ct.startsWith('application/grpc') ? 'grpc' : 'http';
    const x: Exchange = {
      started: this.#clock.now(), protocol, req, res, ctx: ctx ?? { ip: '', port: 0, caller: { identity: undefined, namespace: undefined, ip: '' } },
      bytesIn: 0, bytesOut: 0, status: 0, grpcStatus: undefined, code: undefined, reason: undefined, service: undefined, destination: undefined,
      upstream: undefined, route: undefined, policy: undefined, audited: undefined, done: false, timer: undefined,
    };
    this.#exchanges.set(res, x);
    res.once('close', () => this.#finish(x, state));
    req.on('error', () => undefined);
    res.on('error', () => undefined);
    if (ctx === undefined || state === undefined) { this.#reply(x, { kind: 'reply', status: 503, code: 'RONDO_E_NO_CONFIG', reason: 'the waypoint lost track of this connection or has no config', grpcStatus: GRPC_STATUS.UNAVAILABLE }); return; }
    const r = state.resolve(ctx.ip, ctx.port);
    if (r.kind === 'not-served') { this.#reply(x, { kind: 'reply', status: 404, code: 'RONDO_E_NOT_SERVED', reason: r.reason, grpcStatus: GRPC_STATUS.UNIMPLEMENTED }); return; }
    x.service = r.service;
    const dr: DispatchRequest = {
      protocol, method: req.method ?? 'GET', target: req.url ?? '/',
      authority: (isH2 ? (req.headers[':authority'] as string | undefined) : undefined) ?? req.headers.host ?? `${ctx.ip}:${ctx.port}`,
      headers: forwardableHeaders(req.headers, isH2), scheme: 'http',
    };
    let d;
    try {
      d = dispatch(state, r, dr, ctx.caller, this.#random);
    } catch (e) {
      this.#o.log.error('dispatch threw', { error: e });
      d = { kind: 'reply', status: 500, code: 'RONDO_E_INTERNAL', reason: errorMessage(e), grpcStatus: GRPC_STATUS.INTERNAL } satisfies LocalReply;
    }
    if (d.kind === 'reply') { this.#reply(x, d); return; }
    x.policy = d.authz.policy;
    if (d.authz.audited.length > 0) x.audited = d.authz.audited;
    x.route = d.route === undefined ? undefined : `${d.route.kind}/${d.route.namespace}/${d.route.name}`;
    x.service = d.service;
    const upstreamH2 = protocol === 'grpc' || upstreamSpeaksH2(d.service, d.port);
    for (const m of d.mirrors) this.#mirror(state, d, m, dr, protocol === 'grpc' || upstreamSpeaksH2(m.service, m.port));
    this.#forward(state, x, d, upstreamH2);
  }

  #reply(x: Exchange, d: LocalReply): void {
    x.code = d.code;
    x.reason = d.reason;
    if (d.policy !== undefined) x.policy = d.policy;
    const res = x.res;
    if (res.headersSent) { res.destroy(); return; }
    if (x.protocol === 'grpc' && d.grpcStatus !== undefined && d.status !== 200) {
      // gRPC callers read the outcome from grpc-status in a trailers-only response (HTTP 200).
      x.status = 200;
      x.grpcStatus = d.grpcStatus;
      (res as http.ServerResponse).writeHead(200, { 'content-type': 'application/grpc', 'grpc-status': String(d.grpcStatus), 'grpc-message': encodeURIComponent(d.reason.slice(0, 500)), ...d.headers });
      res.end();
      return;
    }
    x.status = d.status;
    const body = d.status >= 300 && d.status < 400 ? '' : `${d.status === 403 ? 'RBAC: access denied: ' : ''}${d.reason}\n`;
    x.bytesOut = Buffer.byteLength(body);
    (res as http.ServerResponse).writeHead(d.status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': String(x.bytesOut), ...d.headers });
    res.end(body);
  }

  // `h2`: the upstream speaks HTTP/2 (gRPC, or the backend port's appProtocol says so);
  // otherwise HTTP/1.1, whatever the client spoke (as Envoy does by default).
  #forward(state: WaypointState, x: Exchange, d: Forward, h2: boolean): void {
    const ep = this.#pickEndpoint(state, d.service, d.port);
    if (ep === undefined) {
      this.#reply(x, { kind: 'reply', status: 503, code: 'RONDO_E_NO_READY_ENDPOINTS', reason: `service ${keyOf(d.service)} port ${d.port} has no ready endpoints`, grpcStatus: GRPC_STATUS.UNAVAILABLE });
      return;
    }
    const key = ep.key;
    x.upstream = key;
    x.destination = ep.workload;
    let abort: () => void = () => undefined;
    const endRequest = this.#picker.startRequest(key);
    x.res.once('close', endRequest);
    const t = effectiveTimeout(d);
    if (t !== undefined) {
      x.timer = this.#clock.setTimeout(() => {
        x.timer = undefined;
        this.#o.metrics.upstreamError('RONDO_E_REQUEST_TIMEOUT');
        if (!x.res.headersSent) this.#reply(x, { kind: 'reply', status: 504, code: 'RONDO_E_REQUEST_TIMEOUT', reason: `upstream ${key} did not answer within ${t} ms (route timeout)`, grpcStatus: GRPC_STATUS.DEADLINE_EXCEEDED });
        else { x.code = 'RONDO_E_REQUEST_TIMEOUT'; x.res.destroy(); }
        abort();
      }, t);
    }
    const upstream = upstreamOf(ep);
    // Counted where the body is piped: a 'data' listener attached earlier would start the
    // flow before the upstream exists and lose those chunks.
    const countIn = (c: Buffer): void => { x.bytesIn += c.length; };
    const failed = (e: unknown): void => {
      const code: ErrorCode = e instanceof RondoError ? e.code : 'RONDO_E_UPSTREAM_FAILED';
      this.#o.metrics.upstreamError(code);
      if (x.done) return;
      if (!x.res.headersSent) this.#reply(x, { kind: 'reply', status: 503, code, reason: `upstream ${key}: ${errorMessage(e)}`, grpcStatus: GRPC_STATUS.UNAVAILABLE });
      else { x.code = 'RONDO_E_UPSTREAM_RESET'; x.reason = `upstream ${key}: ${errorMessage(e)}`; x.res.destroy(); }
    };
    if (!h2) {
      const up = this.#o.upstreams.http1(upstream, { method: x.req.method ?? 'GET', path: d.target, headers: { ...d.headers, host: d.authority } });
      abort = () => up.destroy();
      up.on('error', failed);
      x.req.on('data', countIn);
      x.req.pipe(up);
      up.on('response', (ur) => {
        const headers = responseHeaders(ur.headers);
        for (const f of d.responseFilters) if (f.type === 'ResponseHeaderModifier') applyHeaderFilter(headers, f.responseHeaderModifier);
        x.status = ur.statusCode ?? 502;
        const res = x.res as http.ServerResponse;
        res.writeHead(x.status, headers as http.OutgoingHttpHeaders);
        ur.on('data', (c: Buffer) => { x.bytesOut += c.length; });
        ur.pipe(res);
        ur.on('aborted', () => failed(new RondoError('RONDO_E_UPSTREAM_RESET', 'upstream closed mid-response')));
        ur.on('error', failed);
      });
      x.res.once('close', () => { if (!x.res.writableFinished) up.destroy(); });
      return;
    }
    this.#o.upstreams.http2(upstream).then((session) => {
      if (x.done) return;
      const us = session.request({ ':method': x.req.method ?? 'GET', ':path': d.target, ':authority': d.authority, ':scheme': 'http', ...d.headers });
      abort = () => us.close(http2.constants.NGHTTP2_CANCEL);
      us.on('error', failed);
      x.req.on('data', countIn);
      x.req.pipe(us);
      us.on('response', (h) => {
        const headers = responseHeaders(h);
        for (const f of d.responseFilters) if (f.type === 'ResponseHeaderModifier') applyHeaderFilter(headers, f.responseHeaderModifier);
        x.status = Number(h[':status'] ?? 502);
        if (h['grpc-status'] !== undefined) x.grpcStatus = Number(h['grpc-status']);
        const res = x.res as http2.Http2ServerResponse;
        res.writeHead(x.status, headers as http2.OutgoingHttpHeaders);
        us.on('data', (c: Buffer) => { x.bytesOut += c.length; });
        us.on('trailers', (tr: http2.IncomingHttpHeaders) => {
          if (tr['grpc-status'] !== undefined) x.grpcStatus = Number(tr['grpc-status']);
          const out: Record<string, string | string[]> = {};
          for (const k in tr) if (k.charCodeAt(0) !== 58 && tr[k] !== undefined) out[k] = tr[k];
          res.addTrailers(out);
        });
        us.pipe(res);
        us.on('aborted', () => failed(new RondoError('RONDO_E_UPSTREAM_RESET', 'upstream reset the stream mid-response')));
      });
      us.on('close', () => {
        if (!x.res.headersSent && !x.done) failed(new RondoError('RONDO_E_UPSTREAM_RESET', `upstream closed the stream before a response (code ${us.rstCode})`));
      });
      x.res.once('close', () => { if (!us.closed) us.close(http2.constants.NGHTTP2_CANCEL); });
    }, failed);
  }

  // Fire and forget: a copy of the request to the mirror backend, its answer dropped.
  #mirror(state: WaypointState, d: Forward, m: { service: Service; port: number }, dr: DispatchRequest, h2: boolean): void {
    const ep = this.#pickEndpoint(state, m.service, m.port);
    if (ep === undefined) return;
    const up = upstreamOf(ep);
    const authority = `${m.service.hostname}:${m.port}`;
    const req = (h2 ? undefined : this.#o.upstreams.http1(up, { method: dr.method, path: d.target, headers: { ...d.headers, host: authority } }));
    if (req !== undefined) {
      req.on('error', () => undefined);
      req.on('response', (r) => r.resume());
      req.end();
      return;
    }
    this.#o.upstreams.http2(up).then((s) => {
      const st = s.request({ ':method': dr.method, ':path': d.target, ':authority': authority, ':scheme': 'http', ...d.headers });
      st.on('error', () => undefined);
      st.resume();
      st.end();
    }, () => undefined);
  }

  #onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    // WebSocket and other HTTP/1.1 upgrades: authorized and routed like any request, then
    // the bytes pass through unchanged in both directions.
    socket.on('error', () => undefined);
    const ctx = this.#ctx.get(socket);
    const state = this.#state;
    const r = ctx === undefined || state === undefined ? undefined : state.resolve(ctx.ip, ctx.port);
    const deny = (status: number, reason: string): void => {
      socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\ncontent-type: text/plain\r\nconnection: close\r\ncontent-length: ${Buffer.byteLength(reason) + 1}\r\n\r\n${reason}\n`);
    };
    if (ctx === undefined || state === undefined || r === undefined || r.kind === 'not-served') { deny(503, 'not served'); return; }
    const dr: DispatchRequest = { protocol: 'http', method: req.method ?? 'GET', target: req.url ?? '/', authority: req.headers.host ?? '', headers: forwardableHeaders(req.headers, false), scheme: 'http' };
    const d = dispatch(state, r, dr, ctx.caller, this.#random);
    if (d.kind === 'reply') { deny(d.status, d.reason); return; }
    const ep = this.#pickEndpoint(state, d.service, d.port);
    if (ep === undefined) { deny(503, `service ${keyOf(d.service)} has no ready endpoints`); return; }
    void this.#o.upstreams.connect(upstreamOf(ep)).then((up) => {
      const lines = [`${req.method ?? 'GET'} ${d.target} HTTP/1.1`, `host: ${d.authority}`, `connection: upgrade`, `upgrade: ${req.headers.upgrade ?? ''}`];
      for (const [k, v] of Object.entries(d.headers)) for (const one of Array.isArray(v) ? v : v === undefined ? [] : [v]) lines.push(`${k}: ${one}`);
      up.write(lines.join('\r\n') + '\r\n\r\n');
      if (head.length > 0) up.write(head);
      void pump(socket, up);
    }, (e: unknown) => deny(503, `upstream ${endpointKey(ep.ip, ep.port)}: ${errorMessage(e)}`));
  }

  #finish(x: Exchange, state: WaypointState | undefined): void {
    if (x.done) return;
    x.done = true;
    if (x.timer !== undefined) this.#clock.clearTimeout(x.timer);
    if (!x.res.writableFinished && x.code === undefined) { x.code = 'RONDO_E_CLIENT_GONE'; x.reason = 'the client went away before the response ended'; }
    const source = state === undefined || x.ctx.caller.identity === undefined ? undefined : this.#workloadOf(state, x.ctx.caller.identity);
    const labels = requestLabels({
      reporter: 'destination', mtls: x.ctx.caller.identity !== undefined,
      source: source ?? (x.ctx.caller.namespace !== undefined ? { namespace: x.ctx.caller.namespace, workloadName: 'unknown' } : undefined),
      sourcePrincipal: x.ctx.caller.identity,
      destination: x.destination,
      // The upstream hop is mTLS only to an enrolled pod; a plain TCP hop has no peer identity.
      destinationPrincipal: x.destination?.enrolled === true ? x.destination.identity : UNKNOWN,
      service: x.service,
      protocol: x.protocol,
      responseCode: x.status,
      grpcStatus: x.grpcStatus,
      code: x.code,
    });
    labels.reporter = 'waypoint';
    const durationMs = this.#clock.now() - x.started;
    this.#o.metrics.request(labels, durationMs, x.bytesIn, x.bytesOut);
    const rec: RequestRecord = {
      kind: 'request', protocol: x.protocol, method: x.req.method ?? '', path: x.req.url ?? '', authority: x.req.headers.host ?? (x.req.headers[':authority'] as string | undefined) ?? '',
      status: x.status, bytesIn: x.bytesIn, bytesOut: x.bytesOut, durationMs,
    };
    if (x.grpcStatus !== undefined) rec.grpcStatus = x.grpcStatus;
    if (x.code !== undefined) rec.code = x.code;
    if (x.reason !== undefined) rec.reason = x.reason;
    if (x.ctx.caller.identity !== undefined) rec.source = x.ctx.caller.identity;
    if (x.service !== undefined) rec.service = keyOf(x.service);
    if (x.upstream !== undefined) rec.upstream = x.upstream;
    if (x.route !== undefined) rec.route = x.route;
    if (x.policy !== undefined) rec.policy = x.policy;
    if (x.audited !== undefined) rec.audited = x.audited;
    this.#o.accessLog?.(rec);
  }

  #workloadOf(state: WaypointState, identity: string): Workload | undefined {
    let m = this.#byIdentity.get(state);
    if (m === undefined) {
      m = new Map();
      for (const w of state.config.workloads.values()) if (!m.has(w.identity)) m.set(w.identity, w);
      this.#byIdentity.set(state, m);
    }
    return m.get(identity);
  }

  /** Stops taking tunnels; open ones end within `deadlineMs` (then they are destroyed). */
  async close(deadlineMs = 0): Promise<void> {
    this.#closed = true;
    const open = [...this.#tunnels];
    if (open.length > 0 && deadlineMs > 0) {
      await new Promise<void>((resolve) => {
        const t = this.#clock.setTimeout(resolve, deadlineMs);
        let left = open.length;
        for (const s of open) s.once('close', () => { if (--left === 0) { this.#clock.clearTimeout(t); resolve(); } });
      });
    }
    for (const s of this.#tunnels) s.destroy();
    this.#h1.closeAllConnections();
  }
}

function upstreamOf(ep: { ip: string; port: number; workload: Workload | undefined }): UpstreamEndpoint {
  return { ip: ep.ip, port: ep.port, identity: ep.workload?.enrolled === true ? ep.workload.identity : undefined };
}

/**
 * The HTTP/1.1 server's view of a tunnel stream. Node's HTTP/1 server corks the socket and
 * writes the status line as a string: written straight onto a server-side HTTP/2 stream (the
 * HBONE tunnel) that first chunk reached the client corrupted in the lab (curl: "HTTP/0.9").
 * Every chunk goes through as its own Buffer here, one write per chunk.
 */
class TunnelSocket extends Duplex {
  readonly #inner: Duplex;
  constructor(inner: Duplex) {
    super({ allowHalfOpen: true });
    this.#inner = inner;
    inner.on('data', (c: Buffer) => { if (!this.push(c)) inner.pause(); });
    inner.once('end', () => this.push(null));
    inner.once('error', (e: Error) => this.destroy(e));
    inner.once('close', () => { if (!this.destroyed) this.destroy(); });
  }
  override _read(): void { this.#inner.resume(); }
  override _write(chunk: Buffer | string, enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.#inner.write(Buffer.isBuffer(chunk) ? Buffer.from(chunk) : Buffer.from(chunk, enc), cb);
  }
  override _final(cb: (e?: Error | null) => void): void { this.#inner.end(cb); }
  override _destroy(e: Error | null, cb: (e?: Error | null) => void): void { this.#inner.destroy(e ?? undefined); cb(e); }
  setTimeout(): this { return this; }
  setNoDelay(): this { return this; }
  setKeepAlive(): this { return this; }
}

/** Whether a backend port declares HTTP/2 (appProtocol h2c, http2 or grpc). */
function upstreamSpeaksH2(service: Service, port: number): boolean {
  return protocolOfAppProtocol(service.ports.find((p) => p.port === port)?.appProtocol) === 'http2';
}

/** The deadline of one attempt: the smaller of the request and backendRequest timeouts set (0: none). */
export function effectiveTimeout(d: Pick<Forward, 'timeouts'>): number | undefined {
  const a = d.timeouts.requestMs, b = d.timeouts.backendRequestMs;
  const set = [a, b].filter((v): v is number => v !== undefined && v > 0);
  return set.length === 0 ? undefined : Math.min(...set);
}

export type { TunnelTarget };
