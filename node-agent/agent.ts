/**
 * The node agent process: the primary owns the controller connection (PushClient), the
 * workload certificates (CertManager), the capture rules and the health/admin endpoints;
 * the data path runs in N workers sharing the listeners with SO_REUSEPORT (or in-process
 * with `workers: 0`). See node-agent/README.md for the model.
 */
import cluster from 'node:cluster';
import type { Worker } from 'node:cluster';
import type http from 'node:http';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { AggregatorRegistry } from 'prom-client';
import type { Logger } from '../common/log.ts';
import { RondoError, errorMessage, isErrorCode } from '../common/errors.ts';
import type { ProxyConfig } from '../common/proxy-config.ts';
import { PushClient, keptConfig } from '../common/push-client.ts';
import { REJECTED } from '../common/wire.ts';
import type { Rejection } from '../common/wire.ts';
import { CertManager } from '../common/cert-manager.ts';
import { splitPem } from '../common/pki.ts';
import { AgentState } from './state.ts';
import { AgentMetrics } from './metrics.ts';
import { Capture } from './capture.ts';
import { DataPlane } from './dataplane.ts';
import type { DataPlanePorts, OpenConnection } from './dataplane.ts';
import { createAccessLog } from '../common/access-log.ts';
import { checkOrigDstSupport } from './orig-dst.ts';
import { serveRoutes, json } from '../common/http-routes.ts';
import type { CertMessageEntry, FromWorker, ToWorker, WorkerSettings } from './worker-protocol.ts';
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

/**
 * The worker module next to this one: `worker.ts` when run from the sources, `worker.js` in
 * the production build (TypeScript rewrites import specifiers, not URLs).
 */
export const WORKER_ENTRY = import.meta.url.endsWith('.ts') ? './worker.ts' : './worker.js';

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
  readonly #workers = new Map<number, Worker>();
  readonly #pendingReq = new Map<number, (m: FromWorker & { type: 'res' }) => void>();
  #local: DataPlane | undefined;
  #state: AgentState | undefined;
  #ready: Readiness = { config: false, capture: false, certs: false, workers: false, draining: false };
  /** Capture and certificate work after each applied config, one at a time (never rejects). */
  #follow: Promise<void> = Promise.resolve();
  #reqId = 1;
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
  async run(): Promise<void> {
    const onSignal = (sig: string): void => {
      this.#log.info('draining', { signal: sig, deadlineMs: this.#o.drainMs ?? 10_000 });
      void this.close(this.#o.drainMs ?? 10_000);
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
    this.#push.start();
    await this.#finished;
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }

  /** Ports the data path bound (resolved when 0 was asked), for tests. */
  get dataPorts(): DataPlanePorts | undefined { return this.#local?.ports ?? this.#workerPorts; }
  #workerPorts: DataPlanePorts | undefined;

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
      const workers = [...this.#workers.values()];
      await Promise.all([
        this.#local?.close(deadlineMs),
        ...workers.map((w) => new Promise<void>((resolve) => {
          if (w.isDead()) { resolve(); return; }
          const kill = setTimeout(() => w.process.kill('SIGKILL'), deadlineMs + 2000);
          w.once('exit', () => { clearTimeout(kill); resolve(); });
          w.send({ type: 'drain', deadlineMs } satisfies ToWorker);
        })),
      ]);
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
    const ports = this.#o.ports ?? {};
    if (this.#o.workers <= 0) {
      const accessLog = createAccessLog();
      // Lines are batched per event-loop turn: the last turn's must not be lost on exit.
      process.once('exit', () => accessLog.flush());
      this.#local = await DataPlane.create({ log: log.child('dataplane'), metrics: this.#metrics, ...(this.#o.host !== undefined ? { host: this.#o.host } : {}), ports, accessLog });
      this.#ready.workers = true;
      return;
    }
    const settings: WorkerSettings = {
      node: this.#o.node, host: this.#o.host ?? '0.0.0.0',
      ports: { outbound: ports.outbound ?? PORTS.outboundCapture, inbound: ports.inbound ?? PORTS.inboundCapture, hbone: ports.hbone ?? PORTS.hbone },
      connectTimeoutMs: 10_000, poolIdleMs: 60_000, idleReclaimS: this.#o.idleReclaimS ?? 30,
    };
    cluster.setupPrimary({ exec: fileURLToPath(new URL(WORKER_ENTRY, import.meta.url)), args: [JSON.stringify(settings)], serialization: 'advanced' });
    await Promise.all(Array.from({ length: this.#o.workers }, (_, i) => this.#fork(i)));
    this.#ready.workers = true;
  }

  #fork(i: number): Promise<void> {
    const w = cluster.fork({ RONDO_WORKER_ID: String(i) });
    this.#workers.set(i, w);
    return new Promise<void>((resolve, reject) => {
      let started = false;
      w.on('message', (m: FromWorker) => {
        if (m.type === 'ready') {
          started = true;
          this.#workerPorts = m.ports;
          // A restarted worker needs the current config and certificates before it serves well.
          if (this.#state !== undefined) w.send({ type: 'config', config: this.#state.config } satisfies ToWorker);
          w.send({ type: 'certs', certs: this.#certEntries() } satisfies ToWorker);
          resolve();
        } else if (m.type === 'fatal') {
          reject(new RondoError(isErrorCode(m.code) ? m.code : 'RONDO_E_WORKER', `data-path worker ${i} failed to start: ${m.message}`));
        } else if (m.type === 'res') {
          this.#pendingReq.get(m.id)?.(m);
        }
      });
      w.on('exit', (code, signal) => {
        if (!started) { reject(new RondoError('RONDO_E_WORKER', `data-path worker ${i} exited during start-up (code ${code}, signal ${signal})`)); return; }
        if (this.#closing !== undefined) return;
        // A crashed worker is replaced; its listeners' share of connections moves to the others meanwhile.
        this.#log.error('data-path worker died; restarting it', { worker: i, code, signal });
        setTimeout(() => { if (this.#closing === undefined) this.#fork(i).catch((e: unknown) => this.#log.error('worker restart failed', { worker: i, error: e })); }, 500).unref();
      });
    });
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
    this.#local?.setState(state);
    for (const w of this.#workers.values()) {
      if (w.isDead()) continue;
      // A worker whose channel just closed is restarted and then sent the current state.
      try { w.send({ type: 'config', config: use } satisfies ToWorker); } catch (e) { this.#log.warn('config not sent to a dying worker', { worker: w.id, error: e }); }
    }
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

  #certEntries(): CertMessageEntry[] {
    const out: CertMessageEntry[] = [];
    for (const id of this.#certs.identities()) {
      const c = this.#certs.get(id);
      if (c === undefined) continue;
      out.push({ identity: id, keyPem: c.keyPem, chain: c.chain, trustBundle: [...c.trustBundle], notAfter: c.notAfter.toISOString() });
    }
    return out;
  }

  #broadcastCerts(): void {
    const entries = this.#certEntries();
    if (this.#local !== undefined) {
      this.#local.setCerts(entries.map((e) => this.#certs.get(e.identity)).filter((c) => c !== undefined));
    }
    for (const w of this.#workers.values()) if (!w.isDead()) w.send({ type: 'certs', certs: entries } satisfies ToWorker);
  }

  #ask(what: 'connections' | 'metrics'): Promise<(FromWorker & { type: 'res' })[]> {
    const live = [...this.#workers.values()].filter((w) => !w.isDead());
    return Promise.all(live.map((w) => new Promise<FromWorker & { type: 'res' }>((resolve) => {
      const id = this.#reqId++;
      const timer = setTimeout(() => { this.#pendingReq.delete(id); resolve({ type: 'res', id }); }, 2000);
      this.#pendingReq.set(id, (m) => { clearTimeout(timer); this.#pendingReq.delete(id); resolve(m); });
      w.send({ type: 'req', id, what } satisfies ToWorker);
    })));
  }

  async #connections(): Promise<OpenConnection[]> {
    if (this.#local !== undefined) return this.#local.connections();
    return (await this.#ask('connections')).flatMap((r) => r.connections ?? []);
  }

  // Workers count connections; the primary owns health gauges. Counters from all are summed.
  async #metricsText(): Promise<string> {
    if (this.#local !== undefined) return this.#metrics.registry.metrics();
    type Json = Awaited<ReturnType<AgentMetrics['registry']['getMetricsAsJSON']>>;
    const own = await this.#metrics.registry.getMetricsAsJSON();
    const fromWorkers = (await this.#ask('metrics')).map((r) =>
      ((r.metrics ?? []) as Json).filter((m) => !PRIMARY_ONLY_METRICS.has(m.name)));
    return AggregatorRegistry.aggregate([own, ...fromWorkers]).metrics();
  }
}

function readRequired(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new RondoError('RONDO_E_CONFIG', `cannot read ${what} ${path}: ${errorMessage(e)}`, { cause: e });
  }
}
