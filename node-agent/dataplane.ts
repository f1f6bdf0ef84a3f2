/**
 * The node agent's data path in one process: the outbound (15001), inbound plaintext (15006)
 * and HBONE (15008) listeners, fed one read-only AgentState and the workload certificates.
 * Each worker runs one DataPlane; listeners are shared between workers with SO_REUSEPORT.
 * Decisions come from decide.ts / authz.ts (pure); this file only does the I/O.
 */
import net from 'node:net';
import type tls from 'node:tls';
import type { Duplex } from 'node:stream';
import type { Logger } from '../common/log.ts';
import { realClock } from '../common/clock.ts';
import type { Clock } from '../common/clock.ts';
import { RondoError, errorMessage } from '../common/errors.ts';
import type { ErrorCode } from '../common/errors.ts';
import { PORTS } from '../common/ports.ts';
import { stripV4Mapped } from '../common/ip.ts';
import {
  HboneClientPool, HboneServer, acceptTunnel, refuseTunnel, pump, buildBaggage, newTraceparent,
} from '../common/hbone.ts';
import type { HostPort, InboundTunnel, PumpResult, ServerCredentials } from '../common/hbone.ts';
import type { Service, Workload } from '../common/wire.ts';
import type { AgentState } from './state.ts';
import { decideOutbound, inboundSource, pickerKey, pickerPools } from './decide.ts';
import { EndpointPicker } from '../common/endpoint-picker.ts';
import type { OutboundDecision } from './decide.ts';
import { tcpLabels } from '../common/istio-labels.ts';
import type { AgentMetrics } from './metrics.ts';
import { originalDestination } from './orig-dst.ts';
import type { AccessLogRecord } from '../common/access-log.ts';

/** A workload certificate as a worker holds it (what CertManager's WorkloadCert also is). */
export interface DataPlaneCert extends ServerCredentials {
  identity: string;
  notAfter: Date;
  secureContext: tls.SecureContext;
}

/** Listener ports (the ambient conventions). */
export interface DataPlanePorts { outbound: number; inbound: number; hbone: number }

/** Options of DataPlane.create. */
export interface DataPlaneOptions {
  log: Logger;
  metrics: AgentMetrics;
  host?: string;
  ports?: Partial<DataPlanePorts>;
  /** Share the listening ports with other workers (SO_REUSEPORT). */
  reusePort?: boolean;
  /** Original destination of a captured socket; default SO_ORIGINAL_DST, else the local address. */
  originalDestination?: (s: net.Socket) => HostPort | undefined;
  /** One record per finished connection (stdout JSON by default in the process). */
  accessLog?: (r: AccessLogRecord) => void;
  /** Upstream TCP connect deadline (default 10 s). */
  connectTimeoutMs?: number;
  /** HBONE session idle close (default 60 s). */
  poolIdleMs?: number;
  /** Drain deadline and pool idle timers (default the real clock). */
  clock?: Clock;
}

/** One open connection, for the admin page. */
export interface OpenConnection {
  id: number;
  direction: 'outbound' | 'inbound' | 'inbound-plaintext';
  src: string;
  dst: string;
  via: string;
  startedAt: string;
}

// startedAt is formatted only when the admin page asks (not once per connection).
interface Tracked { info: Omit<OpenConnection, 'startedAt'>; startedAt: number; sockets: Duplex[] }

/**
 * Stream buffer threshold for the agent process (Node's default is 16 KiB). Pumps move
 * 64 KiB socket reads into HTTP/2 streams and back; at 16 KiB every chunk crossed the mark,
 * so each one paused and resumed the source (epoll changes, more wake-ups). At 256 KiB bulk
 * transfers cost 13 % less CPU per GB and ran ~20 % faster (docs/performance.md). It is a
 * threshold, not an allocation: idle connections cost the same. Node has no per-stream
 * option for HTTP/2 streams, hence process-wide: `setDefaultHighWaterMark(false, this)`.
 */
export const STREAM_HIGH_WATER_MARK = 256 * 1024;

/** Default ports. */
export const DEFAULT_PORTS: DataPlanePorts = { outbound: PORTS.outboundCapture, inbound: PORTS.inboundCapture, hbone: PORTS.hbone };

// Per connection, the same source pod sends the same baggage: build it once per Workload
// object (a new config brings new objects).
const baggageByWorkload = new WeakMap<Workload, string>();
function baggageOf(w: Workload): string {
  let b = baggageByWorkload.get(w);
  if (b === undefined) {
    b = buildBaggage({
      namespace: w.namespace, name: w.name, workloadName: w.workloadName,
      ...(w.labels.app !== undefined ? { app: w.labels.app } : {}),
      ...(w.labels.version !== undefined ? { version: w.labels.version } : {}),
    });
    baggageByWorkload.set(w, b);
  }
  return b;
}
function defaultOrigDst(s: net.Socket): HostPort | undefined {
  const d = originalDestination(s);
  return d === undefined ? undefined : { ip: d.ip, port: d.port };
}

/** The per-worker data path. `create()` binds every listener; `close()` drains. */
export class DataPlane {
  readonly #o: DataPlaneOptions;
  readonly #log: Logger;
  readonly #m: AgentMetrics;
  readonly #pool: HboneClientPool;
  readonly #picker = new EndpointPicker();
  readonly #open = new Map<number, Tracked>();
  #outbound!: net.Server;
  #inbound!: net.Server;
  #hbone!: HboneServer;
  #state: AgentState | undefined;
  #certs = new Map<string, DataPlaneCert>();
  #nextId = 1;
  #tunnels = 0;
  #closing: Promise<void> | undefined;

  private constructor(o: DataPlaneOptions) {
    this.#o = o;
    this.#log = o.log;
    this.#m = o.metrics;
    this.#pool = new HboneClientPool({ log: o.log.child('hbone-client'), idleTimeoutMs: o.poolIdleMs ?? 60_000, clock: o.clock ?? realClock });
  }

  /** Binds 15001, 15006 and 15008 (fails loudly on any of them). */
  static async create(o: DataPlaneOptions): Promise<DataPlane> {
    const dp = new DataPlane(o);
    const host = o.host ?? '0.0.0.0';
    const ports = { ...DEFAULT_PORTS, ...o.ports };
    const reusePort = o.reusePort ?? false;
    // allowHalfOpen: a client's FIN must travel to the far end without closing the reply direction.
    dp.#outbound = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => dp.#onOutbound(s));
    dp.#inbound = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => dp.#onPlaintext(s));
    try {
      await listen(dp.#outbound, host, ports.outbound, reusePort, 'outbound capture');
      await listen(dp.#inbound, host, ports.inbound, reusePort, 'inbound plaintext capture');
      dp.#hbone = await HboneServer.create({
        log: o.log.child('hbone-server'), host, port: ports.hbone, reusePort,
        originalDestination: (s) => dp.#origDst(s),
        credentialsFor: (dst) => dp.#credentialsFor(dst),
        onTunnel: (t) => dp.#onTunnel(t),
        onRefused: (reason) => {
          dp.#m.hboneRefused(reason);
          dp.#m.refused(reason === 'unknown_destination' ? 'RONDO_E_UNKNOWN_DESTINATION' : 'RONDO_E_HBONE_PROTOCOL');
        },
      });
    } catch (e) {
      dp.#outbound.close();
      dp.#inbound.close();
      throw e;
    }
    return dp;
  }

  /** Bound ports (port 0 resolved), for tests. */
  get ports(): DataPlanePorts {
    return {
      outbound: (this.#outbound.address() as net.AddressInfo).port,
      inbound: (this.#inbound.address() as net.AddressInfo).port,
      hbone: this.#hbone.address.port,
    };
  }

  /** Serves from this state from now on; open connections keep what they decided. */
  setState(state: AgentState): void {
    this.#state = state;
    // Round-robin cursors of services that are gone would otherwise pile up with churn.
    this.#picker.retainPools(pickerPools(state));
  }

  /** Replaces the certificate set (by identity); open connections keep the old ones. */
  setCerts(certs: Iterable<DataPlaneCert>): void {
    this.#certs = new Map([...certs].map((c) => [c.identity, c]));
  }

  /** Open connections, for the admin page. */
  connections(): OpenConnection[] {
    return [...this.#open.values()].map((t) => ({ ...t.info, startedAt: new Date(t.startedAt).toISOString() }));
  }

  /** HBONE refusal counts by reason (admin page). */
  hboneRefusals(): Record<string, number> { return Object.fromEntries(this.#hbone.refused); }

  /**
   * Stops accepting, lets open connections finish until `deadlineMs`, then resets what is
   * left. Idempotent.
   */
  close(deadlineMs = 0): Promise<void> {
    this.#closing ??= (async () => {
      this.#outbound.close();
      this.#inbound.close();
      const hbone = this.#hbone.close(deadlineMs);
      const clock = this.#o.clock ?? realClock;
      const deadline = clock.now() + deadlineMs;
      while (this.#open.size > 0 && clock.now() < deadline) await new Promise<void>((r) => clock.setTimeout(r, 50));
      for (const t of this.#open.values()) for (const s of t.sockets) s.destroy();
      await Promise.all([hbone, this.#pool.close(0)]);
    })();
    return this.#closing;
  }

  #poolGauges(): void {
    this.#m.setPool('sessions', this.#pool.sessionCount);
    this.#m.setPool('streams', this.#tunnels);
  }

  #origDst(s: net.Socket): HostPort {
    let d: HostPort | undefined;
    try {
      d = (this.#o.originalDestination ?? defaultOrigDst)(s);
    } catch (e) {
      this.#log.warn('cannot read original destination; using the local address', { error: e });
    }
    return d ?? { ip: stripV4Mapped(s.localAddress ?? ''), port: s.localPort ?? 0 };
  }

  #credentialsFor(dst: HostPort): DataPlaneCert | undefined {
    const w = this.#localEnrolled(dst.ip);
    return w === undefined ? undefined : this.#certs.get(w.identity);
  }

  #localEnrolled(ip: string): Workload | undefined {
    const st = this.#state;
    const w = st?.workloadByIp(ip);
    return w !== undefined && w.enrolled && st !== undefined && st.isLocal(w) ? w : undefined;
  }

  #track(info: Omit<OpenConnection, 'id' | 'startedAt'>, sockets: Duplex[]): Tracked {
    const t: Tracked = { info: { id: this.#nextId++, ...info }, startedAt: Date.now(), sockets };
    this.#open.set(t.info.id, t);
    return t;
  }

  #refuse(socket: net.Socket, code: ErrorCode, message: string, rec: Partial<AccessLogRecord>): void {
    this.#m.refused(code);
    socket.on('error', () => undefined);
    socket.resetAndDestroy();
    this.#o.accessLog?.({ ...rec, outcome: 'refused', code, reason: message } as AccessLogRecord);
  }

  // ---- 15001: outbound capture ----

  #onOutbound(socket: net.Socket): void {
    socket.on('error', () => undefined);
    const src = { ip: stripV4Mapped(socket.remoteAddress ?? ''), port: socket.remotePort ?? 0 };
    const dst = this.#origDst(socket);
    const state = this.#state;
    const base: Partial<AccessLogRecord> = { direction: 'outbound', src: `${src.ip}:${src.port}`, dst: `${dst.ip}:${dst.port}` };
    if (state === undefined) { this.#refuse(socket, 'RONDO_E_NO_CONFIG', 'no configuration yet', base); return; }
    let d: OutboundDecision;
    try {
      d = decideOutbound(state, src, dst, this.#picker);
    } catch (e) {
      this.#refuse(socket, 'RONDO_E_INTERNAL', `decision failed: ${errorMessage(e)}`, base);
      return;
    }
    if (d.source !== undefined) Object.assign(base, { source: `${d.source.namespace}/${d.source.name}` });
    switch (d.kind) {
      case 'refuse':
        this.#refuse(socket, d.code, d.reason, base);
        return;
      case 'passthrough':
        this.#direct(socket, d.ip, d.port, base, d, undefined, undefined);
        return;
      case 'local': {
        // Same node: no tunnel, but the destination's policy still applies.
        const verdict = state.authz.authorizeInbound(d.destination, { sourceIdentity: d.source.identity, sourceIp: src.ip, port: d.port }, 'hbone');
        this.#m.audited(verdict.audited, verdict.allowed);
        if (!verdict.allowed) { this.#refuse(socket, verdict.code, verdict.reason, base); return; }
        this.#direct(socket, d.ip, d.port, base, d, d.destination, d.service);
        return;
      }
      case 'hbone':
      case 'waypoint':
        this.#tunnel(socket, d, base);
        return;
    }
  }

  #direct(socket: net.Socket, ip: string, port: number, base: Partial<AccessLogRecord>, d: OutboundDecision,
    destination: Workload | undefined, service: Service | undefined): void {
    const key = pickerKey(d);
    if (key !== undefined) this.#picker.acquire(key);
    const up = net.connect({ host: ip, port, allowHalfOpen: true, noDelay: true, timeout: this.#o.connectTimeoutMs ?? 10_000 });
    up.once('timeout', () => up.destroy(new RondoError('RONDO_E_UPSTREAM_TIMEOUT', `connect to ${ip}:${port} timed out`)));
    const labels = tcpLabels({ reporter: 'source', source: d.source, destination, service, mtls: d.kind === 'local' });
    const via = d.kind === 'local' ? 'local' : 'passthrough';
    let connected = false;
    up.once('error', (e) => {
      if (!connected) {
        if (key !== undefined) this.#picker.release(key);
        this.#refuse(socket, connectFailureCode(e), `connect to ${ip}:${port}: ${errorMessage(e)}`, { ...base, via });
      }
    });
    up.once('connect', () => {
      connected = true;
      up.setTimeout(0);
      const t = this.#track({ direction: 'outbound', src: base.src ?? '', dst: `${ip}:${port}`, via }, [socket, up]);
      const cm = this.#m.connection(labels);
      const started = Date.now();
      void pump(socket, up, { aToB: (n) => cm.addReceived(n), bToA: (n) => cm.addSent(n) }).then((r) => {
        cm.close();
        if (key !== undefined) this.#picker.release(key);
        this.#open.delete(t.info.id);
        this.#logDone({ ...base, via, target: `${ip}:${port}` }, r, started);
      });
    });
  }

  #tunnel(socket: net.Socket, d: Extract<OutboundDecision, { kind: 'hbone' | 'waypoint' }>, base: Partial<AccessLogRecord>): void {
    const cert = this.#certs.get(d.source.identity);
    if (cert === undefined) {
      this.#refuse(socket, 'RONDO_E_CERTIFICATE_UNAVAILABLE', `no certificate yet for ${d.source.identity}`, base);
      return;
    }
    const key = pickerKey(d);
    if (key !== undefined) this.#picker.acquire(key);
    socket.pause();
    const destination = d.kind === 'hbone' ? d.destination : undefined;
    const labels = tcpLabels({ reporter: 'source', source: d.source, destination, destinationPrincipal: d.expectedIdentity, service: d.service, mtls: true });
    const via = `${d.kind}:${d.connectTo.ip}:${d.connectTo.port}`;
    const started = Date.now();
    const refused = (e: unknown): void => {
      if (key !== undefined) this.#picker.release(key);
      // A 403 is the peer's policy (or identity) check; other failures keep the tunnel's own code.
      const status = (e as { status?: number }).status;
      this.#refuse(socket, status === 403 ? 'RONDO_E_POLICY_DENIED' : connectFailureCode(e), errorMessage(e), { ...base, via, target: d.authority });
    };
    this.#pool.open({
      connectTo: d.connectTo,
      authority: d.authority,
      expectedIdentity: d.expectedIdentity,
      sourceIdentity: d.source.identity,
      secureContext: cert.secureContext,
      headers: {
        traceparent: newTraceparent(),
        baggage: baggageOf(d.source),
      },
    }).then(({ stream, established }) => {
      // The client's first bytes go out right behind the HEADERS instead of after the 200:
      // one round trip less per connection (data-plane-notes pitfall 7). If the peer refuses,
      // they are lost and the client sees a reset, as it would without them.
      let early = 0;
      const forward = (c: Buffer): void => { early += c.length; if (!stream.write(c)) socket.pause(); };
      if (!socket.destroyed) { socket.on('data', forward); socket.resume(); }
      established.then(() => {
        socket.off('data', forward);
        if (socket.destroyed) { stream.destroy(new Error('client went away')); if (key !== undefined) this.#picker.release(key); return; }
        const t = this.#track({ direction: 'outbound', src: base.src ?? '', dst: d.authority, via }, [socket, stream]);
        const cm = this.#m.connection(labels);
        if (early > 0) cm.addReceived(early);
        this.#tunnels++;
        this.#poolGauges();
        void pump(socket, stream, { aToB: (n) => cm.addReceived(n), bToA: (n) => cm.addSent(n) }).then((r) => {
          r.aToB += early;
          cm.close();
          if (key !== undefined) this.#picker.release(key);
          this.#open.delete(t.info.id);
          this.#tunnels--;
          this.#poolGauges();
          this.#logDone({ ...base, via, target: d.authority, identity: d.expectedIdentity }, r, started);
        });
      }, (e: unknown) => {
        socket.off('data', forward);
        refused(e);
      });
    }, (e: unknown) => refused(e));
  }

  // ---- 15008: HBONE inbound ----

  #onTunnel(t: InboundTunnel): void {
    const state = this.#state;
    const target = this.#localEnrolled(t.target.ip);
    const presented = this.#localEnrolled(t.connectionDst.ip);
    const base: Partial<AccessLogRecord> = {
      direction: 'inbound', src: `${t.remote.ip}:${t.remote.port}`, dst: `${t.target.ip}:${t.target.port}`,
      ...(t.peerIdentity !== undefined ? { identity: t.peerIdentity } : {}),
    };
    const refuse = (status: number, code: ErrorCode, message: string): void => {
      this.#m.refused(code);
      refuseTunnel(t.stream, status, message);
      this.#o.accessLog?.({ ...base, outcome: 'refused', code, reason: message } as AccessLogRecord);
    };
    if (state === undefined) { refuse(503, 'RONDO_E_NO_CONFIG', 'agent has no configuration yet'); return; }
    if (target === undefined) {
      refuse(404, 'RONDO_E_UNKNOWN_DESTINATION', `${t.target.ip} is not an enrolled pod on node ${state.node}`);
      return;
    }
    // The certificate we presented was the one of the pod the connection was addressed to; a
    // CONNECT to another identity on this node would let a peer reach it under a false name.
    if (presented === undefined || presented.identity !== target.identity) {
      refuse(403, 'RONDO_E_TARGET_MISMATCH', `CONNECT to ${t.target.ip} on a connection addressed to ${t.connectionDst.ip}: identities differ`);
      return;
    }
    // From the pod's own waypoint: already authorized there with the caller's identity and
    // the L7 rules this agent cannot see (an L7 DENY would otherwise refuse every request).
    if (!state.isServingWaypoint(target, t.peerIdentity)) {
      const verdict = state.authz.authorizeInbound(target, {
        ...(t.peerIdentity !== undefined ? { sourceIdentity: t.peerIdentity } : {}),
        sourceIp: t.remote.ip, port: t.target.port,
      }, 'hbone');
      this.#m.audited(verdict.audited, verdict.allowed);
      if (!verdict.allowed) { refuse(403, verdict.code, verdict.reason); return; }
    }
    // From the certificate and the config; the peer's own `baggage` only picks among the
    // workloads of its identity (it could otherwise forge labels and add series at will).
    const source = inboundSource(state, t.peerIdentity, typeof t.headers['baggage'] === 'string' ? t.headers['baggage'] : undefined);
    const labels = tcpLabels({ reporter: 'destination', source, sourcePrincipal: t.peerIdentity, destination: target, mtls: true });
    const up = net.connect({ host: t.target.ip, port: t.target.port, allowHalfOpen: true, noDelay: true, timeout: this.#o.connectTimeoutMs ?? 10_000 });
    up.once('timeout', () => up.destroy(new RondoError('RONDO_E_UPSTREAM_TIMEOUT', 'connect timed out')));
    let connected = false;
    // A peer that resets the stream while the pod connect is in flight must not leave the
    // connect (a descriptor) behind, nor have it answered once the stream is gone.
    const abandon = (): void => {
      up.destroy();
      this.#o.accessLog?.({ ...base, outcome: 'reset', reason: 'peer reset the stream before the pod connect completed' } as AccessLogRecord);
    };
    t.stream.once('close', abandon);
    up.once('error', (e) => {
      t.stream.off('close', abandon);
      if (!connected) refuse(503, connectFailureCode(e), `connect to pod ${t.target.ip}:${t.target.port}: ${errorMessage(e)}`);
    });
    up.once('connect', () => {
      connected = true;
      t.stream.off('close', abandon);
      up.setTimeout(0);
      if (!acceptTunnel(t.stream)) { abandon(); return; }
      const tr = this.#track({ direction: 'inbound', src: base.src ?? '', dst: base.dst ?? '', via: 'hbone' }, [t.stream, up]);
      const cm = this.#m.connection(labels);
      const started = Date.now();
      // Reporter is the destination: bytes toward the pod are "received", per Istio.
      void pump(t.stream, up, { aToB: (n) => cm.addReceived(n), bToA: (n) => cm.addSent(n) }).then((r) => {
        cm.close();
        this.#open.delete(tr.info.id);
        this.#logDone({ ...base, via: 'hbone', target: base.dst ?? '' }, r, started);
      });
    });
  }

  // ---- 15006: inbound plaintext ----

  #onPlaintext(socket: net.Socket): void {
    socket.on('error', () => undefined);
    const src = { ip: stripV4Mapped(socket.remoteAddress ?? ''), port: socket.remotePort ?? 0 };
    const dst = this.#origDst(socket);
    const base: Partial<AccessLogRecord> = { direction: 'inbound-plaintext', src: `${src.ip}:${src.port}`, dst: `${dst.ip}:${dst.port}` };
    const state = this.#state;
    const target = this.#localEnrolled(dst.ip);
    if (state === undefined || target === undefined) {
      this.#refuse(socket, 'RONDO_E_UNKNOWN_DESTINATION', `${dst.ip} is not an enrolled pod on this node`, base);
      return;
    }
    const verdict = state.authz.authorizeInbound(target, { sourceIp: src.ip, port: dst.port }, 'plaintext');
    this.#m.audited(verdict.audited, verdict.allowed);
    if (!verdict.allowed) {
      this.#refuse(socket, verdict.code, verdict.reason, base);
      return;
    }
    const sourceW = state.workloadByIp(src.ip);
    const labels = tcpLabels({ reporter: 'destination', source: sourceW, destination: target, mtls: false });
    const up = net.connect({ host: dst.ip, port: dst.port, allowHalfOpen: true, noDelay: true, timeout: this.#o.connectTimeoutMs ?? 10_000 });
    up.once('timeout', () => up.destroy(new RondoError('RONDO_E_UPSTREAM_TIMEOUT', 'connect timed out')));
    let connected = false;
    up.once('error', (e) => { if (!connected) this.#refuse(socket, connectFailureCode(e), errorMessage(e), base); });
    up.once('connect', () => {
      connected = true;
      up.setTimeout(0);
      const tr = this.#track({ direction: 'inbound-plaintext', src: base.src ?? '', dst: base.dst ?? '', via: 'plaintext' }, [socket, up]);
      const cm = this.#m.connection(labels);
      const started = Date.now();
      void pump(socket, up, { aToB: (n) => cm.addReceived(n), bToA: (n) => cm.addSent(n) }).then((r) => {
        cm.close();
        this.#open.delete(tr.info.id);
        this.#logDone({ ...base, via: 'plaintext', target: base.dst ?? '' }, r, started);
      });
    });
  }

  #logDone(rec: Partial<AccessLogRecord>, r: PumpResult, started: number): void {
    this.#o.accessLog?.({
      ...rec,
      outcome: r.error === undefined ? 'ok' : 'reset',
      ...(r.error !== undefined ? { reason: r.error.message } : {}),
      bytesSent: r.aToB,
      bytesReceived: r.bToA,
      durationMs: Date.now() - started,
    } as AccessLogRecord);
  }
}

/** The refusal code of a failed upstream connect: the error's own code (timeout, HBONE), else UPSTREAM_FAILED. */
function connectFailureCode(e: unknown): ErrorCode {
  return e instanceof RondoError ? e.code : 'RONDO_E_UPSTREAM_FAILED';
}

async function listen(server: net.Server, host: string, port: number, reusePort: boolean, what: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new RondoError('RONDO_E_LISTEN',
      `cannot listen for ${what} on ${host}:${port}: ${errorMessage(e)} (is another node agent running in this network namespace?)`, { cause: e })));
    // exclusive: in a cluster worker, bind our own SO_REUSEPORT socket instead of the primary's.
    server.listen({ host, port, reusePort, exclusive: reusePort }, resolve);
  });
  server.on('error', () => undefined);
}
