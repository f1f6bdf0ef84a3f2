/**
 * One request handler for HTTP/1.1, HTTP/2 and gRPC (both servers use Node's compatibility
 * API, so the same code serves both): echo JSON, fixed-size bodies, injected failures and
 * latency, and the `/_demo/config` runtime switch.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { Logger } from '../../common/log.ts';
import { InvalidInputError, errorMessage } from '../../common/errors.ts';
import type { PodIdentity } from './identity.ts';
import { applyBehaviourPatch, grpcStatusForHttp, planRequest } from './behaviour.ts';
import type { DemoBehaviour, RequestPlan } from './behaviour.ts';
import { bytesPathSize, fixedBody, MAX_BODY_BYTES } from './bytes-cache.ts';
import { decodeGrpcMessages, encodeGrpcMessage, MAX_GRPC_MESSAGE } from './grpc-framing.ts';

/** The unary gRPC method the demo serves. */
export const GRPC_ECHO_PATH = '/rondo.demo.Echo/Echo';
/** Runtime configuration endpoint. */
export const CONFIG_PATH = '/_demo/config';
const MAX_CONFIG_BODY = 64 * 1024;

/** What the handler needs from its server; behaviour is read per request so switches apply at once. */
export interface EchoContext {
  readonly identity: PodIdentity;
  readonly bodyBytes: number | undefined;
  readonly log: Logger;
  readonly random: () => number;
  readonly delay: (ms: number) => Promise<void>;
  behaviour: DemoBehaviour;
  /** True while draining: HTTP/1.1 answers carry `connection: close`. */
  readonly draining: () => boolean;
}

// The parts of http.IncomingMessage / http2.Http2ServerRequest the handler uses.
interface Req {
  readonly method?: string | undefined;
  readonly url?: string | undefined;
  readonly headers: IncomingHttpHeaders;
  readonly httpVersionMajor: number;
  readonly httpVersion: string;
  readonly socket: { readonly remoteAddress?: string | undefined; readonly remotePort?: number | undefined } | null;
  on(ev: 'data', fn: (c: Buffer) => void): unknown;
  on(ev: 'end', fn: () => void): unknown;
  on(ev: 'error', fn: (e: Error) => void): unknown;
  resume(): unknown;
}
// The parts of http.ServerResponse / http2.Http2ServerResponse the handler uses.
interface Res {
  writeHead(status: number, headers: OutgoingHttpHeaders): unknown;
  addTrailers(trailers: OutgoingHttpHeaders): unknown;
  end(body?: Buffer | string): unknown;
}

/** The JSON body of an echo answer. */
export interface EchoReply {
  pod: string; namespace: string; app: string; version: string; node: string;
  method: string; path: string; protocol: string; authority: string;
  headers: Record<string, string | string[] | undefined>;
  remoteAddress: string; remotePort: number; bodyBytes: number;
  grpcRequest?: unknown;
}

/** Builds the request listener shared by the HTTP/1.1 and HTTP/2 servers. */
export function createEchoHandler(ctx: EchoContext): (req: unknown, res: unknown) => void {
  const id = ctx.identity;
  const baseHeaders = { 'x-rondo-pod': id.pod, 'x-rondo-version': id.version };

  const headersFor = (req: Req, extra: OutgoingHttpHeaders): OutgoingHttpHeaders => {
    const h: OutgoingHttpHeaders = { ...baseHeaders, ...extra };
    if (req.httpVersionMajor === 1 && ctx.draining()) h['connection'] = 'close';
    return h;
  };

  const send = (req: Req, res: Res, status: number, type: string, body: Buffer | string): void => {
    try {
      res.writeHead(status, headersFor(req, { 'content-type': type, 'content-length': Buffer.byteLength(body) }));
      res.end(body);
    } catch (e) {
      // The client went away during an injected delay: nothing left to answer.
      ctx.log.debug('answer dropped', { err: errorMessage(e) });
    }
  };
  const sendJson = (req: Req, res: Res, status: number, value: unknown): void =>
    send(req, res, status, 'application/json', JSON.stringify(value) + '\n');

  const sendGrpc = (req: Req, res: Res, grpcStatus: number, message: string, payload?: Buffer): void => {
    try {
      res.writeHead(200, headersFor(req, { 'content-type': 'application/grpc' }));
      res.addTrailers({ 'grpc-status': String(grpcStatus), ...(message !== '' ? { 'grpc-message': encodeURIComponent(message) } : {}) });
      res.end(payload === undefined ? undefined : encodeGrpcMessage(payload));
    } catch (e) {
      ctx.log.debug('gRPC answer dropped', { err: errorMessage(e) });
    }
  };

  const failure = (status: number): Record<string, unknown> =>
    ({ pod: id.pod, version: id.version, error: 'injected failure', status });

  const after = (plan: RequestPlan, fn: () => void): void => {
    if (plan.delayMs === 0) { fn(); return; }
    ctx.delay(plan.delayMs).then(fn, fn);
  };

  const readBody = (req: Req, limit: number, done: (body: Buffer | undefined, total: number) => void): void => {
    const chunks: Buffer[] = [];
    let total = 0;
    req.on('data', (c) => { total += c.length; if (total <= limit) chunks.push(c); });
    req.on('end', () => done(total <= limit ? Buffer.concat(chunks) : undefined, total));
    req.on('error', () => { /* the socket is gone; the server cleans up */ });
  };

  const echo = (req: Req, path: string, bodyBytes: number, grpcRequest?: unknown): EchoReply => {
    const headers: Record<string, string | string[] | undefined> = {};
    for (const [k, v] of Object.entries(req.headers)) if (!k.startsWith(':')) headers[k] = v;
    const h2 = req.httpVersionMajor === 2;
    return {
      pod: id.pod, namespace: id.namespace, app: id.app, version: id.version, node: id.node,
      method: req.method ?? '', path,
      protocol: h2 ? 'HTTP/2' : `HTTP/${req.httpVersion}`,
      authority: String((h2 ? req.headers[':authority'] : req.headers.host) ?? ''),
      headers, remoteAddress: req.socket?.remoteAddress ?? '', remotePort: req.socket?.remotePort ?? 0, bodyBytes,
      ...(grpcRequest !== undefined ? { grpcRequest } : {}),
    };
  };

  const handleConfig = (req: Req, res: Res): void => {
    if (req.method === 'GET') { sendJson(req, res, 200, ctx.behaviour); req.resume(); return; }
    if (req.method !== 'POST' && req.method !== 'PUT') {
      sendJson(req, res, 405, { error: `${CONFIG_PATH} accepts GET or POST, not ${req.method ?? '?'}` });
      req.resume();
      return;
    }
    readBody(req, MAX_CONFIG_BODY, (body) => {
      try {
        if (body === undefined) throw new InvalidInputError(`demo config body exceeds ${MAX_CONFIG_BODY} bytes`);
        let parsed: unknown;
        try { parsed = JSON.parse(body.toString('utf8')); } catch (e) {
          throw new InvalidInputError(`demo config is not valid JSON: ${errorMessage(e)}`);
        }
        ctx.behaviour = applyBehaviourPatch(ctx.behaviour, parsed);
        ctx.log.info('behaviour changed', { ...ctx.behaviour });
        sendJson(req, res, 200, ctx.behaviour);
      } catch (e) {
        sendJson(req, res, 400, { error: errorMessage(e) });
      }
    });
  };

  const handleGrpc = (req: Req, res: Res, path: string): void => {
    let plan: RequestPlan;
    try { plan = planRequest(ctx.behaviour, req.headers, ctx.random); } catch (e) {
      req.resume();
      sendGrpc(req, res, 3, errorMessage(e));
      return;
    }
    readBody(req, MAX_GRPC_MESSAGE + 5, (body, total) => after(plan, () => {
      if (path !== GRPC_ECHO_PATH) { sendGrpc(req, res, 12, `unknown method ${path}: the demo serves ${GRPC_ECHO_PATH}`); return; }
      if (body === undefined) { sendGrpc(req, res, 8, `request of ${total} bytes exceeds ${MAX_GRPC_MESSAGE}`); return; }
      if (plan.failStatus !== undefined) { sendGrpc(req, res, grpcStatusForHttp(plan.failStatus), `injected failure (HTTP ${plan.failStatus})`); return; }
      let request: unknown;
      try {
        const msgs = decodeGrpcMessages(body);
        if (msgs.length !== 1) throw new InvalidInputError(`unary method expects exactly one message, got ${msgs.length}`);
        const m = msgs[0]!;
        request = m.length === 0 ? {} : JSON.parse(m.toString('utf8'));
      } catch (e) {
        sendGrpc(req, res, 3, `bad request message (JSON expected): ${errorMessage(e)}`);
        return;
      }
      sendGrpc(req, res, 0, '', Buffer.from(JSON.stringify(echo(req, path, total, request))));
    }));
  };

  return (rawReq: unknown, rawRes: unknown): void => {
    const req = rawReq as Req;
    const res = rawRes as Res;
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);

    if (req.httpVersionMajor === 2 && (req.headers['content-type'] ?? '').startsWith('application/grpc')) {
      handleGrpc(req, res, path);
      return;
    }
    if (path.startsWith('/_demo/')) {
      if (path === CONFIG_PATH) { handleConfig(req, res); return; }
      if (path === '/_demo/health') { send(req, res, 200, 'text/plain', 'ok\n'); req.resume(); return; }
      sendJson(req, res, 404, { error: `unknown demo endpoint ${path}: try ${CONFIG_PATH}` });
      req.resume();
      return;
    }
    let plan: RequestPlan;
    try { plan = planRequest(ctx.behaviour, req.headers, ctx.random); } catch (e) {
      req.resume();
      sendJson(req, res, 400, { error: errorMessage(e) });
      return;
    }
    // Fixed-size bodies answer without waiting for the request body or building JSON:
    // benchmarks drive this path at tens of thousands of requests per second.
    const n = bytesPathSize(path) ?? ctx.bodyBytes;
    if (n !== undefined) {
      req.resume();
      if (n > MAX_BODY_BYTES) { sendJson(req, res, 400, { error: `at most ${MAX_BODY_BYTES} bytes per answer` }); return; }
      after(plan, () => {
        if (plan.failStatus !== undefined) sendJson(req, res, plan.failStatus, failure(plan.failStatus));
        else send(req, res, 200, 'application/octet-stream', fixedBody(n));
      });
      return;
    }
    readBody(req, 0, (_b, total) => after(plan, () => {
      if (plan.failStatus !== undefined) sendJson(req, res, plan.failStatus, failure(plan.failStatus));
      else sendJson(req, res, 200, echo(req, url, total));
    }));
  };
}
