/**
 * The demo's load client: n requests over c concurrent workers using HTTP/1.1 keep-alive,
 * HTTP/2 prior knowledge, or unary gRPC, summarised by status and by answering pod.
 */
import http from 'node:http';
import http2 from 'node:http2';
import { performance } from 'node:perf_hooks';
import { RondoError } from '../../common/errors.ts';
import { GRPC_ECHO_PATH } from './echo-handler.ts';
import { encodeGrpcMessage } from './grpc-framing.ts';
import { SummaryBuilder } from './summary.ts';
import type { ClientSummary, Outcome } from './summary.ts';

/** Options of runLoad(). */
export interface LoadOptions {
  url: string;
  requests: number;
  concurrency: number;
  mode: ClientSummary['mode'];
  headers: Readonly<Record<string, string>>;
  timeoutMs: number;
  now?: () => number;
}

type Sender = () => Promise<Omit<Outcome, 'latencyMs'>>;

const header = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);

function timeoutError(ms: number): RondoError {
  return new RondoError('RONDO_E_DEMO_TIMEOUT', `no answer within ${ms} ms`);
}

function http1Sender(url: URL, o: LoadOptions, agent: http.Agent): Sender {
  return () => new Promise((resolve, reject) => {
    const req = http.request(url, { agent, headers: o.headers, timeout: o.timeoutMs }, (res) => {
      const pod = header(res.headers['x-rondo-pod']);
      const version = header(res.headers['x-rondo-version']);
      res.on('data', () => { /* drained, not kept */ });
      res.on('end', () => resolve({ status: String(res.statusCode ?? 0), pod, version }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(timeoutError(o.timeoutMs)));
    req.on('error', reject);
    req.end();
  });
}

/** One HTTP/2 session shared by all workers, reopened if it dies. */
class SessionSource {
  #session: http2.ClientHttp2Session | undefined;
  readonly #origin: string;
  constructor(origin: string) { this.#origin = origin; }
  get(): http2.ClientHttp2Session {
    const s = this.#session;
    if (s !== undefined && !s.closed && !s.destroyed) return s;
    const n = http2.connect(this.#origin);
    n.on('error', () => { /* surfaced through each stream's own error */ });
    this.#session = n;
    return n;
  }
  close(): void { this.#session?.close(); }
}

function h2Sender(url: URL, o: LoadOptions, sessions: SessionSource, grpc: boolean): Sender {
  const path = grpc ? (url.pathname === '/' ? GRPC_ECHO_PATH : url.pathname) : url.pathname + url.search;
  let seq = 0;
  return () => new Promise((resolve, reject) => {
    const reqHeaders: http2.OutgoingHttpHeaders = { ...o.headers, ':path': path, ':method': grpc ? 'POST' : 'GET' };
    if (grpc) { reqHeaders['content-type'] = 'application/grpc'; reqHeaders['te'] = 'trailers'; }
    let stream: http2.ClientHttp2Stream;
    try { stream = sessions.get().request(reqHeaders, { endStream: !grpc }); } catch (e) { reject(e instanceof Error ? e : new Error(String(e))); return; }
    let pod: string | undefined;
    let version: string | undefined;
    let status = '';
    let settled = false;
    stream.setTimeout(o.timeoutMs, () => { settled = true; stream.close(http2.constants.NGHTTP2_CANCEL); reject(timeoutError(o.timeoutMs)); });
    stream.on('response', (h) => {
      pod = header(h['x-rondo-pod']);
      version = header(h['x-rondo-version']);
      // A trailers-only gRPC answer carries grpc-status in the headers.
      status = grpc ? header(h['grpc-status']) ?? '' : String(h[':status'] ?? 0);
    });
    stream.on('trailers', (t: http2.IncomingHttpHeaders) => { if (grpc) status = header(t['grpc-status']) ?? status; });
    stream.on('data', () => { /* drained */ });
    stream.on('error', (e: Error) => { if (!settled) { settled = true; reject(e); } });
    stream.on('close', () => {
      if (settled) return;
      settled = true;
      if (status === '') reject(new RondoError('RONDO_E_DEMO_NO_STATUS', grpc ? 'stream closed without grpc-status' : 'stream closed without a response'));
      else resolve({ status, pod, version });
    });
    if (grpc) stream.end(encodeGrpcMessage(Buffer.from(JSON.stringify({ seq: seq++ }))));
  });
}

/** Runs the load and resolves with its summary; requests that fail are counted, never thrown. */
export async function runLoad(o: LoadOptions): Promise<ClientSummary> {
  const url = new URL(o.url);
  const now = o.now ?? (() => performance.now());
  const agent = new http.Agent({ keepAlive: true, maxSockets: o.concurrency });
  const sessions = new SessionSource(url.origin);
  const send = o.mode === 'http1' ? http1Sender(url, o, agent) : h2Sender(url, o, sessions, o.mode === 'grpc');
  const sum = new SummaryBuilder();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < o.requests) {
      next++;
      const t0 = now();
      try {
        const r = await send();
        sum.ok({ ...r, latencyMs: now() - t0 });
      } catch (e) {
        sum.error(e);
      }
    }
  };
  const start = now();
  try {
    await Promise.all(Array.from({ length: Math.min(o.concurrency, o.requests) }, worker));
  } finally {
    agent.destroy();
    sessions.close();
  }
  return sum.build({ url: o.url, mode: o.mode, requests: o.requests }, now() - start);
}
