/**
 * The waypoint process: the controller connection (PushClient as `{kind: 'waypoint'}`), its
 * own certificate (CertManager: the controller signs only the waypoint's own identity,
 * `spiffe://<td>/ns/<ns>/sa/<gateway>`), the HBONE server on 15008 presenting it, the
 * request path (proxy.ts) and the health, metrics and admin endpoints (common/http-routes.ts).
 *
 * Ready (`/healthz/ready` 200) once a config is applied and the certificate is issued; a
 * config the waypoint cannot index is NACKed with its reason while the previous one serves.
 */
import type http from 'node:http';
import type { Logger } from '../common/log.ts';
import { RondoError, errorMessage } from '../common/errors.ts';
import type { ProxyConfig } from '../common/proxy-config.ts';
import { PushClient, keptConfig } from '../common/push-client.ts';
import { REJECTED } from '../common/wire.ts';
import type { Rejection } from '../common/wire.ts';
import { CertManager } from '../common/cert-manager.ts';
import { splitPem } from '../common/pki.ts';
import { HboneClientPool, HboneServer } from '../common/hbone.ts';
import { serveRoutes, json } from '../common/http-routes.ts';
import { createAccessLog } from '../common/access-log.ts';
import type { AccessLog } from '../common/access-log.ts';
import { formatSpiffeId } from '../common/spiffe.ts';
import { serveUntilSignal } from '../common/drain-on-signal.ts';
import { readRequired } from '../common/files.ts';
import { PORTS } from '../common/ports.ts';
import { WaypointState } from './state.ts';
import { WaypointProxy } from './proxy.ts';
import type { RequestRecord } from './proxy.ts';
import { Upstreams } from './upstream.ts';
import { WaypointMetrics } from './metrics.ts';

/** Options of Waypoint.create (main.ts maps the flags onto these). */
export interface WaypointOptions {
  namespace: string;
  name: string;
  /** `ip:port` of the controller's push endpoint. */
  controller: string;
  tokenFile: string;
  caFile: string;
  log: Logger;
  host?: string;
  hbonePort?: number;
  adminPort?: number;
  metricsPort?: number;
  /** How long open tunnels may finish after SIGTERM (default 10 s). */
  drainMs?: number;
  accessLog?: AccessLog<RequestRecord>;
  /** [0, 1) source for weighted routing (tests). */
  random?: () => number;
  /** Push client reconnect delays (tests shorten them). */
  backoff?: { initialMs?: number; maxMs?: number };
}

/** The waypoint. `create()` binds and fails loudly; `run()` serves until SIGTERM; `close()` drains. */
export class Waypoint {
  readonly #o: WaypointOptions;
  readonly #log: Logger;
  readonly #metrics = new WaypointMetrics({ processMetrics: true });
  readonly #push: PushClient;
  readonly #certs: CertManager;
  readonly #hboneClients: HboneClientPool;
  readonly #upstreams: Upstreams;
  readonly #proxy: WaypointProxy;
  readonly #servers: http.Server[] = [];
  #hbone: HboneServer | undefined;
  #state: WaypointState | undefined;
  #identity: string | undefined;
  #certReady = false;
  #draining = false;
  #closing: Promise<void> | undefined;
  #done!: () => void;
  readonly #finished = new Promise<void>((r) => { this.#done = r; });

  private constructor(o: WaypointOptions, token: string, caPems: string[]) {
    this.#o = o;
    this.#log = o.log;
    this.#push = new PushClient({
      url: `wss://${o.controller}`, token, proxy: { kind: 'waypoint', namespace: o.namespace, name: o.name }, caPems,
      log: o.log.child('push'), registry: this.#metrics.registry, onConfig: (cfg, prev, kind) => this.#onConfig(cfg, prev, kind),
      ...(o.backoff !== undefined ? { backoff: o.backoff } : {}),
    });
    this.#certs = new CertManager({ sign: (id, csr) => this.#push.sign(id, csr), log: o.log.child('certs'), registry: this.#metrics.registry });
    this.#hboneClients = new HboneClientPool({ log: o.log.child('hbone-client') });
    this.#upstreams = new Upstreams({
      log: o.log.child('upstream'), hbone: this.#hboneClients,
      credentials: () => {
        const c = this.#identity === undefined ? undefined : this.#certs.get(this.#identity);
        return c === undefined ? undefined : { identity: c.identity, secureContext: c.secureContext };
      },
    });
    const accessLog = o.accessLog ?? createAccessLog<RequestRecord>();
    this.#proxy = new WaypointProxy({
      log: o.log.child('proxy'), metrics: this.#metrics, upstreams: this.#upstreams, accessLog,
      ...(o.random !== undefined ? { random: o.random } : {}),
    });
  }

  /** Reads the token and CA, binds the health, admin and HBONE listeners. */
  static async create(o: WaypointOptions): Promise<Waypoint> {
    const token = readRequired(o.tokenFile, 'token file (--token-file)').trim();
    if (token === '') throw new RondoError('RONDO_E_CONFIG', `token file ${o.tokenFile} is empty`);
    const caPems = splitPem(readRequired(o.caFile, 'controller CA file (--ca-file)'));
    if (caPems.length === 0) throw new RondoError('RONDO_E_CONFIG', `CA file ${o.caFile} holds no PEM certificate: point --ca-file at <ca-dir>/root-cert.pem`);
    const w = new Waypoint(o, token, caPems);
    try {
      await w.#bind();
    } catch (e) {
      await w.close(0);
      throw e;
    }
    return w;
  }

  /** Whether /healthz/ready answers 200. */
  get ready(): boolean {
    return this.#state !== undefined && this.#certReady && !this.#draining;
  }

  /** Bound ports (resolved when 0 was asked), for tests. */
  get ports(): { hbone: number; metrics: number; admin: number } {
    const port = (i: number): number => ((this.#servers[i]?.address() ?? { port: 0 }) as { port: number }).port;
    return { hbone: this.#hbone?.address.port ?? 0, metrics: port(0), admin: port(1) };
  }

  /** Connects to the controller and serves until SIGTERM/SIGINT (then drains) or close(). */
  run(): Promise<void> {
    return serveUntilSignal({ log: this.#log, drainMs: this.#o.drainMs ?? 10_000, start: () => this.#push.start(), close: (d) => this.close(d), finished: this.#finished });
  }

  /** Stops accepting, lets open tunnels finish until `deadlineMs`, then forces. Idempotent. */
  close(deadlineMs = 0): Promise<void> {
    this.#closing ??= (async () => {
      this.#draining = true;
      await this.#hbone?.close(deadlineMs);
      await this.#proxy.close(deadlineMs);
      this.#upstreams.close();
      await this.#hboneClients.close(0);
      this.#certs.close();
      await this.#push.close();
      await Promise.all(this.#servers.map((s) => new Promise<void>((r) => { s.close(() => r()); s.closeAllConnections(); })));
      this.#done();
    })();
    return this.#closing;
  }

  async #bind(): Promise<void> {
    const host = this.#o.host ?? '0.0.0.0';
    this.#servers.push(await serveRoutes({
      host, port: this.#o.metricsPort ?? PORTS.proxyHealth, log: this.#log, what: `metrics/health (${PORTS.proxyHealth})`,
      routes: {
        '/metrics': async () => ({ status: 200, type: this.#metrics.registry.contentType, body: await this.#metrics.registry.metrics() }),
        '/healthz/ready': () => Promise.resolve(json({ ready: this.ready, config: this.#state !== undefined, certs: this.#certReady, draining: this.#draining, rejected: this.#push.rejected }, this.ready ? 200 : 503)),
      },
    }));
    this.#servers.push(await serveRoutes({
      host: '127.0.0.1', port: this.#o.adminPort ?? PORTS.proxyAdmin, log: this.#log, what: `admin (${PORTS.proxyAdmin})`,
      routes: {
        '/config_dump': () => Promise.resolve(json({
          waypoint: `${this.#o.namespace}/${this.#o.name}`, version: this.#state?.config.version, rejected: this.#push.rejected,
          routes: this.#state?.routes.services, config: this.#state?.config,
        })),
        '/certs': () => Promise.resolve(json(this.#certs.identities().map((id) => ({ identity: id, notAfter: this.#certs.get(id)?.notAfter.toISOString() })))),
        '/ready': () => Promise.resolve(json({ ready: this.ready, tunnels: this.#proxy.openTunnels })),
      },
    }));
    this.#hbone = await HboneServer.create({
      log: this.#log.child('hbone'), host, port: this.#o.hbonePort ?? PORTS.hbone,
      // Whatever address a tunnel was sent to, the waypoint answers with its own identity.
      credentialsFor: () => (this.#identity === undefined ? undefined : this.#certs.get(this.#identity)),
      onTunnel: (t) => this.#proxy.onTunnel(t),
      onRefused: (reason) => this.#metrics.refused(reason),
    });
  }

  #onConfig(cfg: ProxyConfig, prev: ProxyConfig | undefined, kind: 'snapshot' | 'delta'): Rejection[] {
    const rejected: Rejection[] = [];
    let use = cfg;
    try {
      this.#certs.setTrustBundle([...cfg.mesh.trustBundle]);
    } catch (e) {
      rejected.push({ type: REJECTED.mesh, key: 'trustBundle', reason: `cannot load the trust bundle: ${errorMessage(e)}` });
      const kept = keptConfig(cfg, prev, rejected, kind);
      if (kept === undefined) return rejected;
      use = kept;
    }
    let state: WaypointState;
    try {
      state = WaypointState.build(use, { namespace: this.#o.namespace, name: this.#o.name });
    } catch (e) {
      this.#log.error('config refused; keeping the previous one', { version: cfg.version, error: e });
      return [{ type: REJECTED.config, key: '*', reason: `cannot index the config: ${errorMessage(e)}` }];
    }
    this.#state = state;
    this.#proxy.setState(state);
    this.#metrics.configApplied(use.version);
    const identity = formatSpiffeId(use.mesh.trustDomain, this.#o.namespace, this.#o.name);
    if (identity !== this.#identity) {
      this.#identity = identity;
      this.#certs.retain(new Set([identity]));
      this.#certReady = false;
      this.#certs.ensure(identity).then(() => { this.#certReady = true; }, (e: unknown) => {
        this.#log.error('waypoint certificate not issued', { identity, error: e instanceof Error ? e : errorMessage(e) });
      });
    }
    return rejected;
  }
}

