/**
 * The node agent process: the primary owns the controller connection (PushClient), the
 * workload certificates (CertManager), the capture rules and the health/admin endpoints;
 * the data path runs in the proxy shell (common/proxy-shell.ts): N workers sharing the
 * listeners with SO_REUSEPORT, or in-process with `workers: 0`. See node-agent/README.md.
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
import { AgentState } from './state.ts';
import { AgentMetrics } from './metrics.ts';
import { Capture } from './capture.ts';
import type { DataPlanePorts, OpenConnection } from './dataplane.ts';
import { createAgentPlane } from './plane.ts';
import type { AgentPlaneSettings } from './plane.ts';
import { checkOrigDstSupport } from './orig-dst.ts';
import { serveRoutes, json } from '../common/http-routes.ts';
import { ProxyShell, siblingModule } from '../common/proxy-shell.ts';
import { serveUntilSignal } from '../common/drain-on-signal.ts';
import { readRequired } from '../common/files.ts';
import { PORTS } from '../common/ports.ts';

/** Options of Agent.create (main.ts maps the command-line flags onto these). */
export interface AgentOptions {
  node: string;
  /** `ip:port` of the controller's push endpoint. */
  controller: string;
  tokenFile: string;
  caFile: string;
  log: Logger;
  /** Data-path workers; 0 runs the data path in this process (tests, debugging). */
  workers: number;
  adminPort?: number;
  metricsPort?: number;
  host?: string;
  ports?: Partial<DataPlanePorts>;
  /** How long open connections may finish after SIGTERM (default 10 s). */
  drainMs?: number;
  /** Seconds of quiet after which workers hand garbage back (default 30; 0: never). */
  idleReclaimS?: number;
  /** Program iptables/ipset (default true; tests without root turn it off). */
  capture?: boolean;
  /** Check SO_ORIGINAL_DST support at start-up (default true). */
  checkOrigDst?: boolean;
}

/** Why the agent is not ready, for /healthz/ready. */
interface Readiness { config: boolean; capture: boolean; certs: boolean; workers: boolean; draining: boolean }

/** The worker module next to this one: `./worker.ts` from the sources, `./worker.js` in the build. */
export const WORKER_ENTRY = siblingModule(import.meta.url, 'worker');

// The primary's health gauges; a worker's copies of them (never set) stay out of /metrics.
const PRIMARY_ONLY_METRICS = new Set(['rondo_agent_config_age_seconds', 'rondo_agent_config_version']);

/** The node agent. `create()` binds and fails loudly; `run()` serves until SIGTERM; `close()` drains. */
export class Agent {
  readonly #o: AgentOptions;
  readonly #log: Logger;
  readonly #metrics: AgentMetrics;
  readonly #push: PushClient;
  readonly #certs: CertManager;
  readonly #capture: Capture | undefined;
  readonly #servers: http.Server[] = [];
  #shell: ProxyShell<AgentPlaneSettings, DataPlanePorts, OpenConnection> | undefined;
  #state: AgentState | undefined;
  #ready: Readiness = { config: false, capture: false, certs: false, workers: false, draining: false };
  /** Capture and certificate work after each applied config, one at a time (never rejects). */
  #follow: Promise<void> = Promise.resolve();
  #closing: Promise<void> | undefined;
  #done!: () => void;
  readonly #finished = new Promise<void>((r) => { this.#done = r; });

  private constructor(o: AgentOptions, token: string, caPems: string[]) {
    this.#o = o;
    this.#log = o.log;
    this.#metrics = new AgentMetrics({ processMetrics: true });
    this.#push = new PushClient({
      url: `wss://${o.controller}`,
      token,
      proxy: { kind: 'node-agent', node: o.node },
      caPems,
      log: o.log.child('push'),
      registry: this.#metrics.registry,
      onConfig: (cfg, prev, kind) => this.#onConfig(cfg, prev, kind),
    });
    this.#certs = new CertManager({ sign: (id, csr) => this.#push.sign(id, csr), log: o.log.child('certs'), registry: this.#metrics.registry });
    this.#certs.on('rotated', () => this.#broadcastCerts());
    this.#capture = o.capture === false ? undefined : Capture.create({ log: o.log.child('capture') });
  }

  /** Validates inputs, binds every listener (health, admin, data path) and starts the workers. */
  static async create(o: AgentOptions): Promise<Agent> {
    if (o.checkOrigDst !== false) checkOrigDstSupport();
    const token = readRequired(o.tokenFile, 'token file (--token-file)').trim();
    if (token === '') throw new RondoError('RONDO_E_CONFIG', `token file ${o.tokenFile} is empty: the lab writes one per node under /run/rondo/<lab>/tokens`);
    const caPems = splitPem(readRequired(o.caFile, 'controller CA file (--ca-file)'));
    if (caPems.length === 0) throw new RondoError('RONDO_E_CONFIG', `CA file ${o.caFile} holds no PEM certificate: point --ca-file at <ca-dir>/root-cert.pem`);
    const a = new Agent(o, token, caPems);
    try {
      await a.#bind();
    } catch (e) {
      await a.close(0);
      throw e;
    }
    return a;
  }

  /** Connects to the controller and serves until SIGTERM/SIGINT (then drains) or close(). */
  run(): Promise<void> {
    return serveUntilSignal({ log: this.#log, drainMs: this.#o.drainMs ?? 10_000, start: () => this.#push.start(), close: (d) => this.close(d), finished: this.#finished });
  }

  /** Ports the data path bound (resolved when 0 was asked), for tests. */
  get dataPorts(): DataPlanePorts | undefined { return this.#shell?.ports; }

  /** Health/admin ports as bound. */
  get httpPorts(): { metrics: number; admin: number } {
    const port = (i: number): number => ((this.#servers[i]?.address() ?? { port: 0 }) as { port: number }).port;
    return { metrics: port(0), admin: port(1) };
  }

  /** Whether /healthz/ready answers 200. */
  get ready(): boolean {
    const r = this.#ready;
    return r.config && r.capture && r.certs && r.workers && !r.draining;
  }

  /** Stops accepting, drains open connections until `deadlineMs`, then forces. Idempotent. */
  close(deadlineMs = 0): Promise<void> {
    this.#closing ??= (async () => {
      this.#ready.draining = true;
      await this.#shell?.close(deadlineMs);
      this.#certs.close();
      await this.#push.close();
      // Capture rules stay: a restarting agent finds them in place, and pods do not fall
      // back to unencrypted traffic while it is away (fail closed). Only main.ts's
      // --cleanup-on-exit removes them, through removeCapture() after this.
      await Promise.all(this.#servers.map((s) => new Promise<void>((r) => { s.close(() => r()); s.closeAllConnections(); })));
      this.#done();
    })();
    return this.#closing;
  }

  /**
   * Removes the node's capture rules (`--cleanup-on-exit`, after close()). Goes through the
   * same Capture, so it runs after any reconcile in flight; none starts once closing.
   */
  removeCapture(): Promise<void> {
    return this.#capture?.remove() ?? Promise.resolve();
  }

  async #bind(): Promise<void> {
    const log = this.#log;
    this.#servers.push(await serveRoutes({
      host: this.#o.host ?? '0.0.0.0', port: this.#o.metricsPort ?? PORTS.proxyHealth, log, what: `metrics/health (${PORTS.proxyHealth})`,
      routes: {
        '/metrics': async () => ({ status: 200, type: this.#metrics.registry.contentType, body: await this.#metricsText() }),
        '/healthz/ready': () => Promise.resolve(json({ ready: this.ready, ...this.#ready, rejected: this.#push.rejected }, this.ready ? 200 : 503)),
      },
    }));
    this.#servers.push(await serveRoutes({
      host: '127.0.0.1', port: this.#o.adminPort ?? PORTS.proxyAdmin, log, what: `admin (${PORTS.proxyAdmin})`,
      routes: {
        '/config_dump': () => Promise.resolve(json({ version: this.#state?.config.version, problems: this.#state?.problems, rejected: this.#push.rejected, config: this.#state?.config })),
        '/certs': () => Promise.resolve(json(this.#certs.identities().map((id) => {
          const c = this.#certs.get(id);
          return { identity: id, notAfter: c?.notAfter.toISOString(), expiresInSeconds: c === undefined ? undefined : Math.round((c.notAfter.getTime() - Date.now()) / 1000) };
        }))),
        '/connections': async () => json(await this.#connections()),
        '/ready': () => Promise.resolve(json({ ready: this.ready, ...this.#ready })),
      },
    }));
    const settings: AgentPlaneSettings = {
      node: this.#o.node, ports: this.#o.ports ?? {}, ...(this.#o.host !== undefined ? { host: this.#o.host } : {}),
    };
    this.#shell = await ProxyShell.create({
      log, workers: Math.max(0, this.#o.workers), settings, registry: this.#metrics.registry,
      primaryOnlyMetrics: PRIMARY_ONLY_METRICS, idleReclaimS: this.#o.idleReclaimS ?? 30,
      workerEntry: new URL(WORKER_ENTRY, import.meta.url),
      // In-process the plane records into the primary's metrics and serves the state the
      // primary already built to check the config (indexing it twice would cost a config's time).
      plane: (po) => createAgentPlane(po, {
        metrics: this.#metrics,
        stateFor: (c) => (this.#state?.config === c ? this.#state : AgentState.build(c, this.#o.node)),
      }),
    });
    this.#ready.workers = true;
  }

  /**
   * Applies one pushed config, or refuses it (or its trust bundle) with a reason while the
   * previous one keeps serving: everything that can fail is checked before anything
   * changes. Returns what was refused; the push client NACKs it after this returns. Capture
   * rules and certificates follow in the background (the ACK must not wait for CSRs).
   */
  #onConfig(cfg: ProxyConfig, prev: ProxyConfig | undefined, kind: 'snapshot' | 'delta'): Rejection[] {
    const rejected: Rejection[] = [];
    let use = cfg;
    let state: AgentState;
    try {
      state = AgentState.build(use, this.#o.node);
    } catch (e) {
      return this.#refused(cfg, [{ type: REJECTED.config, key: '*', reason: `cannot index the config: ${errorMessage(e)}` }]);
    }
    try {
      // Checks every root before it replaces the bundle: a throw leaves the old one in force.
      this.#certs.setTrustBundle([...cfg.mesh.trustBundle]);
    } catch (e) {
      rejected.push({ type: REJECTED.mesh, key: 'trustBundle', reason: `cannot load the trust bundle: ${errorMessage(e)}` });
      const kept = keptConfig(cfg, prev, rejected, kind);
      // No earlier mesh settings to fall back on: nothing of this config can serve.
      if (kept === undefined) return this.#refused(cfg, rejected);
      use = kept;
      state = AgentState.build(use, this.#o.node);
    }
    for (const p of state.problems) this.#log.warn('config problem', { ...p });
    // Not ready while switching: if anything below throws, readiness says so until a later
    // config applies in full.
    this.#ready.config = false;
    this.#state = state;
    this.#shell?.setConfig(use);
    this.#metrics.configApplied(use.version);
    this.#ready.config = true;
    if (rejected.length > 0) this.#log.warn('config applied without what the agent refused', { version: cfg.version, rejected });
    this.#follow = this.#follow.then(() => this.#reconcile(state)).catch((e: unknown) => {
      this.#log.error('capture/certificate reconcile failed', { version: use.version, error: e instanceof Error ? e : errorMessage(e) });
    });
    return rejected;
  }

  #refused(cfg: ProxyConfig, rejected: Rejection[]): Rejection[] {
    this.#log.error('config refused; keeping the previous one', { version: cfg.version, kept: this.#state?.config.version, rejected });
    return rejected;
  }

  /** Capture rules and workload certificates for `state`, unless a newer config came meanwhile. */
  async #reconcile(state: AgentState): Promise<void> {
    if (this.#state !== state || this.#closing !== undefined) return;
    const local = state.localWorkloads().filter((w) => w.enrolled);
    const ids = new Set(local.map((w) => w.identity));
    this.#certs.retain(ids);
    const capture = this.#capture === undefined ? Promise.resolve() : this.#capture.reconcile(state.enrolledLocalIps());
    const certs = Promise.allSettled([...ids].map((id) => this.#certs.ensure(id)));
    try {
      await capture;
      this.#ready.capture = true;
    } catch (e) {
      this.#ready.capture = false;
      this.#log.error('capture rules could not be programmed', { error: e });
    }
    const results = await certs;
    const failed = results.filter((r) => r.status === 'rejected');
    for (const f of failed) this.#log.warn('certificate not issued', { error: f.reason instanceof Error ? f.reason : String(f.reason) });
    this.#ready.certs = failed.length === 0;
    this.#broadcastCerts();
  }

  #broadcastCerts(): void {
    this.#shell?.setCerts(this.#certs.identities().map((id) => this.#certs.get(id)).filter((c) => c !== undefined));
  }

  #connections(): Promise<OpenConnection[]> {
    return this.#shell?.connections() ?? Promise.resolve([]);
  }

  // Workers count connections; the primary owns health gauges. Counters from all are summed.
  #metricsText(): Promise<string> {
    return this.#shell?.metricsText() ?? this.#metrics.registry.metrics();
  }
}

