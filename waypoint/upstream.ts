/**
 * The waypoint's upstream connections, pooled per endpoint: a byte stream to an endpoint is
 * an HBONE tunnel with the waypoint's own certificate when the pod is enrolled (the
 * destination's node agent terminates it and applies L4 policy), or plain TCP when it is
 * not. HTTP/1.1 requests reuse keep-alive connections through one http.Agent; HTTP/2 and gRPC
 * requests are multiplexed on one HTTP/2 session per endpoint.
 */
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import type tls from 'node:tls';
import type { Duplex } from 'node:stream';
import type { Logger } from '../common/log.ts';
import { RondoError, errorMessage } from '../common/errors.ts';
import type { HboneClientPool } from '../common/hbone.ts';
import { PORTS } from '../common/ports.ts';
import { endpointKey } from '../common/endpoint-picker.ts';

/** Where one upstream attempt goes. */
export interface UpstreamEndpoint {
  ip: string;
  port: number;
  /** SPIFFE ID the endpoint's agent must present (the pod's identity); undefined: plain TCP (pod not enrolled). */
  identity: string | undefined;
}

/** The waypoint's own certificate, as the HBONE client presents it. */
export interface OwnCredentials { identity: string; secureContext: tls.SecureContext }

/** Options of Upstreams. */
export interface UpstreamOptions {
  log: Logger;
  hbone: HboneClientPool;
  credentials: () => OwnCredentials | undefined;
  /** TCP connect deadline for endpoints outside the mesh (default 10 s). */
  connectTimeoutMs?: number;
  /** Idle keep-alive connections kept per endpoint (default 64). */
  maxFreePerEndpoint?: number;
}

// Node's http.Agent treats what createConnection returns as a net.Socket: it calls these on
// a connection it keeps or reuses. An HTTP/2 stream (the HBONE tunnel) has none of them and
// needs none (keep-alive and Nagle belong to the tunnel's own TCP connection).
const SOCKET_SHIMS = ['setKeepAlive', 'setNoDelay', 'ref', 'unref'] as const;
function asAgentSocket(d: Duplex): Duplex {
  const o = d as unknown as Record<string, unknown>;
  for (const name of SOCKET_SHIMS) if (typeof o[name] !== 'function') o[name] = () => d;
  return d;
}

interface RequestOptionsWithEndpoint extends http.RequestOptions { rondoEndpoint?: UpstreamEndpoint }

/** Upstream pools; `close()` ends them. */
export class Upstreams {
  readonly #o: UpstreamOptions;
  readonly #agent: http.Agent;
  readonly #h2 = new Map<string, Promise<http2.ClientHttp2Session>>();
  #closed = false;

  constructor(o: UpstreamOptions) {
    this.#o = o;
    const connect = (ep: UpstreamEndpoint): Promise<Duplex> => this.connect(ep);
    class TunnelAgent extends http.Agent {
      override createConnection(opts: RequestOptionsWithEndpoint, cb: (err: Error | null, s?: Duplex) => void): undefined {
        const ep = opts.rondoEndpoint;
        if (ep === undefined) { cb(new RondoError('RONDO_E_INTERNAL', 'upstream request without an endpoint')); return undefined; }
        connect(ep).then((s) => cb(null, asAgentSocket(s)), (e: unknown) => cb(e instanceof Error ? e : new Error(errorMessage(e))));
        return undefined;
      }
    }
    // lifo: the most recently used connection is the warmest; idle ones time out at the far end first.
    this.#agent = new TunnelAgent({ keepAlive: true, maxFreeSockets: o.maxFreePerEndpoint ?? 64, scheduling: 'lifo', timeout: 60_000 });
  }

  /** A byte stream to the endpoint: HBONE when it has a mesh identity, TCP otherwise. */
  async connect(ep: UpstreamEndpoint): Promise<Duplex> {
    if (this.#closed) throw new RondoError('RONDO_E_CLOSED', 'waypoint upstreams are closed (draining)');
    if (ep.identity === undefined) return this.#tcp(ep);
    const own = this.#o.credentials();
    if (own === undefined) throw new RondoError('RONDO_E_CERTIFICATE_UNAVAILABLE', 'the waypoint has no certificate yet (is the controller reachable?)');
    return this.#o.hbone.connect({
      connectTo: { ip: ep.ip, port: PORTS.hbone }, authority: endpointKey(ep.ip, ep.port),
      expectedIdentity: ep.identity, sourceIdentity: own.identity, secureContext: own.secureContext,
    });
  }

  #tcp(ep: UpstreamEndpoint): Promise<Duplex> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: ep.ip, port: ep.port, noDelay: true, timeout: this.#o.connectTimeoutMs ?? 10_000 });
      s.once('timeout', () => s.destroy(new RondoError('RONDO_E_UPSTREAM_TIMEOUT', `connect to ${endpointKey(ep.ip, ep.port)} timed out`)));
      s.once('error', (e) => reject(e instanceof RondoError ? e : new RondoError('RONDO_E_UPSTREAM_FAILED', `connect to ${endpointKey(ep.ip, ep.port)}: ${errorMessage(e)}`, { cause: e })));
      s.once('connect', () => { s.setTimeout(0); resolve(s); });
    });
  }

  /** An HTTP/1.1 request to the endpoint on a pooled keep-alive connection. */
  http1(ep: UpstreamEndpoint, o: { method: string; path: string; headers: http.OutgoingHttpHeaders }): http.ClientRequest {
    const opts: RequestOptionsWithEndpoint = { agent: this.#agent, host: ep.ip, port: ep.port, method: o.method, path: o.path, headers: o.headers, rondoEndpoint: ep, setHost: false };
    return http.request(opts);
  }

  /** The endpoint's HTTP/2 session (one per endpoint, multiplexed). */
  async http2(ep: UpstreamEndpoint): Promise<http2.ClientHttp2Session> {
    const key = `${endpointKey(ep.ip, ep.port)}|${ep.identity ?? ''}`;
    const have = this.#h2.get(key);
    if (have !== undefined) {
      const s = await have.catch(() => undefined);
      if (s !== undefined && !s.closed && !s.destroyed) return s;
      if (this.#h2.get(key) === have) this.#h2.delete(key);
    }
    const p = (async () => {
      const stream = await this.connect(ep);
      const session = http2.connect(`http://${endpointKey(ep.ip, ep.port)}`, { createConnection: () => stream, settings: { enablePush: false } });
      const forget = (): void => { if (this.#h2.get(key) === p) this.#h2.delete(key); };
      session.on('close', forget);
      session.on('goaway', forget);
      session.on('error', (e) => { this.#o.log.debug('upstream HTTP/2 session failed', { endpoint: key, error: e }); forget(); });
      await new Promise<void>((resolve, reject) => {
        session.once('connect', () => resolve());
        session.once('error', reject);
      });
      return session;
    })();
    this.#h2.set(key, p);
    p.catch(() => { if (this.#h2.get(key) === p) this.#h2.delete(key); });
    return p;
  }

  /** Closes idle connections and sessions; requests in flight finish. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#agent.destroy();
    for (const p of this.#h2.values()) void p.then((s) => s.close(), () => undefined);
    this.#h2.clear();
  }
}
