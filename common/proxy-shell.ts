/**
 * The primary side of a proxy's process shell, the same for every proxy (the node agent, the
 * waypoint): runs the deployable's data plane in N node:cluster workers that each bind their
 * own SO_REUSEPORT listeners (the kernel spreads connections over cores, no hand-off), or in
 * this process with `workers: 0`. It sends every worker the current config and certificates
 * (again to one it restarted after a crash), sums the workers' metrics into the primary's
 * /metrics, collects their open connections, and drains them on close. What the primary does
 * besides (push client, certificates, capture, readiness, HTTP routes) stays in the deployable.
 */
import cluster from 'node:cluster';
import type { Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import { AggregatorRegistry } from 'prom-client';
import type { Registry } from 'prom-client';
import type { Logger } from './log.ts';
import { RondoError, isErrorCode } from './errors.ts';
import { realClock } from './clock.ts';
import type { Clock, TimerHandle } from './clock.ts';
import type { ProxyConfig } from './proxy-config.ts';
import { WORKER_ID_ENV } from './proxy-protocol.ts';
import type { CertEntry, FromWorker, PlaneFactory, ProxyCert, ProxyPlane, ToWorker, WorkerArgs } from './proxy-protocol.ts';

/**
 * `./<name>.ts` next to the calling module when it runs from the sources, `./<name>.js` in the
 * production build: TypeScript rewrites import specifiers, not URLs, so a worker entry named
 * in a URL must pick its suffix at run time. Pass the caller's `import.meta.url`.
 */
export function siblingModule(importMetaUrl: string, name: string): string {
  return `./${name}${importMetaUrl.endsWith('.ts') ? '.ts' : '.js'}`;
}

/** Options of ProxyShell.create. */
export interface ProxyShellOptions<Settings, Ports, Conn> {
  log: Logger;
  /** Data-path worker processes; 0 runs the plane in this process. */
  workers: number;
  /** Builds the plane in this process (`workers: 0`); workers build theirs in `workerEntry`. */
  plane: PlaneFactory<Settings, Ports, Conn>;
  /** The deployable's worker module (absolute path or file URL); it calls runProxyWorker. */
  workerEntry: string | URL;
  /** Handed to the plane factory; JSON-serialisable (a worker gets it on its command line). */
  settings: Settings;
  /** The primary's own registry (its health, push and certificate metrics). */
  registry: Registry;
  /** Metric names the primary alone reports: the workers' series of these are left out of /metrics. */
  primaryOnlyMetrics?: ReadonlySet<string>;
  /** Seconds of quiet before a worker hands garbage back (default 30; 0: never). The primary runs its own reclaimer. */
  idleReclaimS?: number;
  /** Wait before a crashed worker is forked again (default 500 ms). */
  restartDelayMs?: number;
  /** How long a worker may take to answer for /metrics or /connections (default 2 s; then it counts as empty). */
  requestTimeoutMs?: number;
  /** Restart, request and drain timers (default the real clock). */
  clock?: Clock;
  /** Called each time a worker serves: at start-up and after every restart. */
  onWorkerReady?: (index: number, pid: number) => void;
}

type Res = Extract<FromWorker, { type: 'res' }>;

function certEntry(c: ProxyCert): CertEntry {
  return { identity: c.identity, keyPem: c.keyPem, chain: [...c.chain], trustBundle: [...c.trustBundle], notAfter: c.notAfter.toISOString() };
}

/** A proxy's data path in workers or in-process. `create()` starts it; `close()` drains it. */
export class ProxyShell<Settings, Ports = unknown, Conn = unknown> {
  readonly #o: ProxyShellOptions<Settings, Ports, Conn>;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #workers = new Map<number, Worker>();
  readonly #pending = new Map<number, (m: Res) => void>();
  readonly #restarts = new Set<TimerHandle>();
  #local: ProxyPlane<Ports, Conn> | undefined;
  #workerPorts: Ports | undefined;
  #config: ProxyConfig | undefined;
  #certs: readonly ProxyCert[] = [];
  #reqId = 1;
  #closing: Promise<void> | undefined;

  private constructor(o: ProxyShellOptions<Settings, Ports, Conn>) {
    this.#o = o;
    this.#log = o.log;
    this.#clock = o.clock ?? realClock;
  }

  /**
   * Builds the plane in-process, or forks every worker and resolves once all of them serve.
   * A worker that fails to start rejects with its error's code (else RONDO_E_WORKER), after
   * the others were stopped.
   */
  static async create<S, P, C>(o: ProxyShellOptions<S, P, C>): Promise<ProxyShell<S, P, C>> {
    if (!Number.isInteger(o.workers) || o.workers < 0) {
      throw new RondoError('RONDO_E_CONFIG', `workers must be a whole number ≥ 0 (0 runs the data path in-process), got ${o.workers}`);
    }
    const shell = new ProxyShell(o);
    if (o.workers === 0) {
      shell.#local = await o.plane({ log: o.log.child('dataplane'), settings: o.settings, reusePort: false });
      return shell;
    }
    const started = await Promise.allSettled(Array.from({ length: o.workers }, (_, i) => shell.#fork(i)));
    const failed = started.find((r) => r.status === 'rejected');
    if (failed !== undefined) {
      await shell.close(0);
      throw failed.reason;
    }
    return shell;
  }

  /** Ports the data path bound (a worker's: they all bind the same), port 0 resolved. */
  get ports(): Ports | undefined { return this.#local?.ports ?? this.#workerPorts; }

  /** Live workers (none in-process). */
  workers(): { index: number; pid: number }[] {
    return [...this.#workers].filter(([, w]) => !w.isDead()).map(([index, w]) => ({ index, pid: w.process.pid ?? 0 }));
  }

  /** Serves from `config` from now on, in every worker (and in one restarted later). */
  setConfig(config: ProxyConfig): void {
    this.#config = config;
    this.#local?.setConfig(config);
    for (const w of this.#live()) this.#send(w, { type: 'config', config });
  }

  /** Replaces the certificate set everywhere (workers build their own SecureContexts). */
  setCerts(certs: readonly ProxyCert[]): void {
    this.#certs = certs;
    this.#local?.setCerts(certs);
    const live = this.#live();
    if (live.length === 0) return;
    const entries = certs.map(certEntry);
    for (const w of live) this.#send(w, { type: 'certs', certs: entries });
  }

  /** Open connections of every worker (a worker that does not answer in time adds none). */
  async connections(): Promise<Conn[]> {
    if (this.#local !== undefined) return this.#local.connections();
    return (await this.#ask('connections')).flatMap((r) => (r.connections ?? []) as Conn[]);
  }

  /**
   * Prometheus text: the primary's registry plus every worker's, summed per series
   * (prom-client's AggregatorRegistry); primary-only metrics come from the primary alone.
   */
  async metricsText(): Promise<string> {
    const own = this.#o.registry;
    if (this.#local?.registry === own) return own.metrics();
    type Json = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;
    const only = this.#o.primaryOnlyMetrics ?? new Set<string>();
    const planes: Json[] = this.#local !== undefined
      ? [await this.#local.registry.getMetricsAsJSON()]
      : (await this.#ask('metrics')).map((r) => (r.metrics ?? []) as Json);
    return AggregatorRegistry.aggregate([await own.getMetricsAsJSON(), ...planes.map((p) => p.filter((m) => !only.has(m.name)))]).metrics();
  }

  /** Stops accepting everywhere, lets open connections finish until `deadlineMs`, then forces. Idempotent. */
  close(deadlineMs = 0): Promise<void> {
    this.#closing ??= (async () => {
      for (const t of this.#restarts) this.#clock.clearTimeout(t);
      this.#restarts.clear();
      await Promise.all([
        this.#local?.close(deadlineMs),
        ...[...this.#workers.values()].map((w) => new Promise<void>((resolve) => {
          if (w.isDead()) { resolve(); return; }
          // A worker that cannot finish its drain (or never got the message) is killed.
          const kill = this.#clock.setTimeout(() => w.process.kill('SIGKILL'), deadlineMs + 2000);
          w.once('exit', () => { this.#clock.clearTimeout(kill); resolve(); });
          this.#send(w, { type: 'drain', deadlineMs });
        })),
      ]);
    })();
    return this.#closing;
  }

  #live(): Worker[] {
    return [...this.#workers.values()].filter((w) => !w.isDead());
  }

  #send(w: Worker, m: ToWorker): void {
    // A worker whose channel just closed is restarted and then sent the current state.
    try { w.send(m); } catch (e) { this.#log.warn('message not sent to a dying worker', { type: m.type, worker: w.id, error: e }); }
  }

  #fork(i: number): Promise<void> {
    const args: WorkerArgs<Settings> = { settings: this.#o.settings, idleReclaimS: this.#o.idleReclaimS ?? 30 };
    const entry = this.#o.workerEntry;
    // Settings are process-wide: set right before each fork, so shells in one process
    // (tests, a restart of another shell's worker) each fork their own module.
    cluster.setupPrimary({ exec: entry instanceof URL ? fileURLToPath(entry) : entry, args: [JSON.stringify(args)], serialization: 'advanced' });
    const w = cluster.fork({ [WORKER_ID_ENV]: String(i) });
    this.#workers.set(i, w);
    // A send to a worker that just died reports here; it must not end the primary.
    w.on('error', (e: unknown) => this.#log.warn('data-path worker channel error', { worker: i, error: e }));
    return new Promise<void>((resolve, reject) => {
      let started = false;
      w.on('message', (m: FromWorker) => {
        if (m.type === 'ready') {
          started = true;
          this.#workerPorts = m.ports as Ports;
          // A restarted worker needs the current config and certificates before it serves well.
          if (this.#config !== undefined) this.#send(w, { type: 'config', config: this.#config });
          this.#send(w, { type: 'certs', certs: this.#certs.map(certEntry) });
          resolve();
          this.#o.onWorkerReady?.(i, w.process.pid ?? 0);
        } else if (m.type === 'fatal') {
          reject(new RondoError(isErrorCode(m.code) ? m.code : 'RONDO_E_WORKER', `data-path worker ${i} failed to start: ${m.message}`));
        } else {
          this.#pending.get(m.id)?.(m);
        }
      });
      w.on('exit', (code, signal) => {
        if (!started) { reject(new RondoError('RONDO_E_WORKER', `data-path worker ${i} exited during start-up (code ${code}, signal ${signal})`)); return; }
        if (this.#closing !== undefined) return;
        // A crashed worker is replaced; its listeners' share of connections moves to the others meanwhile.
        this.#log.error('data-path worker died; restarting it', { worker: i, code, signal });
        const t = this.#clock.setTimeout(() => {
          this.#restarts.delete(t);
          if (this.#closing !== undefined) return;
          this.#fork(i).catch((e: unknown) => { if (this.#closing === undefined) this.#log.error('worker restart failed', { worker: i, error: e }); });
        }, this.#o.restartDelayMs ?? 500).unref();
        this.#restarts.add(t);
      });
    });
  }

  #ask(what: 'connections' | 'metrics'): Promise<Res[]> {
    return Promise.all(this.#live().map((w) => new Promise<Res>((resolve) => {
      const id = this.#reqId++;
      const timer = this.#clock.setTimeout(() => { this.#pending.delete(id); resolve({ type: 'res', id }); }, this.#o.requestTimeoutMs ?? 2000);
      this.#pending.set(id, (m) => { this.#clock.clearTimeout(timer); this.#pending.delete(id); resolve(m); });
      this.#send(w, { type: 'req', id, what });
    })));
  }
}
