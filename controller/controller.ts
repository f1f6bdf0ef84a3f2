/**
 * The controller process in one object: sources -> store -> (debounced) model build ->
 * push server; the CA signs CSRs after a node-authorization check; :15014 serves metrics,
 * health and debug. create() binds everything and fails loudly; close() is idempotent.
 */
import { existsSync, readFileSync } from 'node:fs';
import type { Registry } from 'prom-client';
import type { Logger } from '../common/log.ts';
import type { ProxyIdentity } from '../common/wire.ts';
import { RondoError, errorMessage } from '../common/errors.ts';
import { formatSpiffeId } from '../common/spiffe.ts';
import { ObjectStore } from './store.ts';
import { LABELS } from './model/labels.ts';
import { ModelBuilder, forProxy, type MeshSnapshot } from './model/build.ts';
import type { InvalidResource } from './model/labels.ts';
import { PushServer, type ProxyStatus } from './push/server.ts';
import type { Authenticator } from './push/auth.ts';
import { createControllerMetrics, type ControllerMetrics } from './metrics.ts';
import { createHttpEndpoint, type HttpEndpoint } from './http.ts';
import type { ResourceSink, Source } from './sources/types.ts';
import type { StatusWriter } from './status/status-writer.ts';

/** What the controller needs from the CA (controller/ca.ts CertificateAuthority). */
export interface CaLike {
  signCsr(csrPem: string, expectedIdentity: string): Promise<string[]>;
  issueServing(o: { ips: string[]; dnsNames: string[] }): Promise<{ keyPem: string; chain: string[] }>;
  readonly trustBundle: string[];
  /** Re-reads the roots to trust (rotation without a restart); throws when they do not load. */
  reloadTrustBundle?(): void;
}

/** Options of Controller.create(). */
export interface ControllerOptions {
  /** Address for both listeners (the controller's underlay IP in the lab). */
  listen: string;
  pushPort: number;
  metricsPort: number;
  trustDomain: string;
  rootNamespace?: string;
  /** Quiet time after the last change before a version is built (default 50). */
  debounceMs?: number;
  /** Longest a burst may hold a version back (default 20 × debounce). */
  maxDelayMs?: number;
  authenticator: Authenticator;
  ca: CaLike;
  /** Sources to start, each writing into the given sink. */
  sources: (sink: ResourceSink) => Source[];
  log: Logger;
  metrics?: ControllerMetrics;
  registry?: Registry;
  /**
   * Told the full list of invalid resources whenever it changes, e.g. to write status
   * conditions in Kubernetes (the file source has nowhere to write them).
   */
  onInvalid?: (invalid: readonly InvalidResource[]) => void;
  /** Writes status conditions after every build (Kubernetes); absent for the file source. */
  status?: StatusWriter;
  /**
   * How often the CA's trust bundle is re-read; a change is pushed to every proxy
   * (default 5000 ms; 0: only at start-up and on refreshTrustBundle()).
   */
  trustBundleRefreshMs?: number;
  /**
   * TEST ONLY, never in production: when this file exists, its whole content is appended,
   * unchecked, to the trust bundle pushed to proxies (read with the CA's bundle), so tests
   * can see proxies refuse a bundle they cannot load. Off unless given.
   */
  debugUncheckedTrustBundleFile?: string;
  /** Bearer token that opens /debug/* to other hosts (without it only the controller's own host is served). */
  debugToken?: string;
}

/** The running controller. */
export class Controller {
  readonly store: ObjectStore;
  readonly metrics: ControllerMetrics;
  readonly #o: ControllerOptions;
  readonly #builder: ModelBuilder;
  readonly #sources: Source[];
  #push: PushServer | undefined;
  #http!: HttpEndpoint;
  #snapshot: MeshSnapshot | undefined;
  #version = 0;
  #timer: NodeJS.Timeout | undefined;
  #bundleTimer: NodeJS.Timeout | undefined;
  /** The trust bundle the model pushes (the CA's, plus the test-only extra entry). */
  #bundle: string[];
  #firstDirtyAt = 0;
  #invalidKeys = new Set<string>();
  #closing: Promise<void> | undefined;
  #done!: () => void;
  readonly #finished = new Promise<void>((r) => { this.#done = r; });

  private constructor(o: ControllerOptions) {
    this.#o = o;
    this.store = new ObjectStore();
    this.metrics = o.metrics ?? createControllerMetrics(o.registry !== undefined ? { registry: o.registry } : { defaults: true });
    this.#bundle = this.#pushedBundle();
    this.#builder = new ModelBuilder({ trustDomain: o.trustDomain, trustBundle: this.#bundle, ...(o.rootNamespace !== undefined ? { rootNamespace: o.rootNamespace } : {}) });
    this.#sources = o.sources(this.store);
  }

  /** Syncs the sources, builds version 1, binds the push and HTTP listeners. */
  static async create(o: ControllerOptions): Promise<Controller> {
    const c = new Controller(o);
    try {
      await c.#start();
    } catch (e) {
      await c.close();
      throw e;
    }
    return c;
  }

  async #start(): Promise<void> {
    const o = this.#o;
    // Subscribe first: a change landing between the initial build and the listeners coming
    // up must still produce a version (the timer only rebuilds until the push server exists).
    this.store.onChange(() => this.#schedule());
    for (const s of this.#sources) await s.start();
    this.#rebuild();
    const serving = await o.ca.issueServing({ ips: [o.listen], dnsNames: ['rondo-controller', 'rondo-controller.rondo-system.svc'] });
    const push = await PushServer.create({
      host: o.listen, port: o.pushPort, tls: serving, authenticator: o.authenticator,
      viewFor: (p) => forProxy(this.#requireSnapshot(), p),
      signCsr: (p, identity, csr) => this.#signCsr(p, identity, csr),
      log: o.log.child('push'), metrics: this.metrics,
    });
    this.#push = push;
    push.publish(this.#version);
    this.#http = await createHttpEndpoint(o.listen, o.metricsPort, {
      registry: this.metrics.registry,
      ready: () => this.#snapshot !== undefined && this.#closing === undefined,
      debug: {
        proxies: () => push.proxies(),
        invalid: () => this.#snapshot?.invalid ?? [],
        version: () => ({ version: this.#version }),
      },
      log: o.log.child('http'),
      ...(o.debugToken !== undefined ? { debugToken: o.debugToken } : {}),
    });
    const refreshMs = o.trustBundleRefreshMs ?? 5000;
    if (refreshMs > 0) {
      this.#bundleTimer = setInterval(() => this.refreshTrustBundle(), refreshMs);
      this.#bundleTimer.unref();
    }
    o.log.info('controller ready', { push: `${o.listen}:${push.address.port}`, http: `${o.listen}:${this.#http.port}`, version: this.#version });
  }

  /**
   * Re-reads the CA's trust bundle (trust-bundle-*.pem added for a root rotation, or
   * removed after it) and, when it changed, builds a version that carries it to every
   * proxy. A bundle that does not load is logged and the one in force stays. Returns
   * whether the pushed bundle changed.
   */
  refreshTrustBundle(): boolean {
    if (this.#closing !== undefined) return false;
    try {
      this.#o.ca.reloadTrustBundle?.();
    } catch (e) {
      this.#o.log.error('trust bundle not reloaded; the one in force stays', { err: e instanceof Error ? e : errorMessage(e) });
      return false;
    }
    const bundle = this.#pushedBundle();
    if (bundle.length === this.#bundle.length && bundle.every((pem, i) => pem === this.#bundle[i])) return false;
    this.#o.log.info('trust bundle changed; pushing it to every proxy', { roots: bundle.length, was: this.#bundle.length });
    this.#bundle = bundle;
    this.#builder.setTrustBundle(bundle);
    this.#schedule();
    return true;
  }

  #pushedBundle(): string[] {
    const file = this.#o.debugUncheckedTrustBundleFile;
    if (file === undefined || !existsSync(file)) return this.#o.ca.trustBundle;
    let extra = '';
    try {
      extra = readFileSync(file, 'utf8');
    } catch (e) {
      this.#o.log.warn('test-only trust bundle file unreadable; ignored', { file, err: e instanceof Error ? e : errorMessage(e) });
    }
    return extra === '' ? this.#o.ca.trustBundle : [...this.#o.ca.trustBundle, extra];
  }

  /** The latest snapshot. */
  get snapshot(): MeshSnapshot | undefined {
    return this.#snapshot;
  }

  /** The latest published version. */
  get version(): number {
    return this.#version;
  }

  /** Bound ports (useful when 0 was asked for). */
  get ports(): { push: number; http: number } {
    return { push: this.#started().address.port, http: this.#http.port };
  }

  /** Connected proxies and their versions (as /debug/proxies shows them). */
  proxies(): ProxyStatus[] {
    return this.#started().proxies();
  }

  #started(): PushServer {
    if (this.#push === undefined) throw new RondoError('RONDO_E_NOT_READY', 'controller not started: await Controller.create() first');
    return this.#push;
  }

  /** Serves until close(). */
  run(): Promise<void> {
    return this.#finished;
  }

  /** Builds and publishes right away (tests; the debounce otherwise does it). */
  flush(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#rebuild();
    this.#push?.publish(this.#version);
  }

  /** Stops sources and listeners; idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#timer !== undefined) clearTimeout(this.#timer);
      if (this.#bundleTimer !== undefined) clearInterval(this.#bundleTimer);
      for (const s of this.#sources) await s.close().catch(() => undefined);
      await this.#o.status?.close();
      await this.#push?.close();
      await this.#http?.close();
      this.#done();
    })();
    return this.#closing;
  }

  #requireSnapshot(): MeshSnapshot {
    if (this.#snapshot === undefined) throw new RondoError('RONDO_E_NOT_READY', 'no snapshot built yet');
    return this.#snapshot;
  }

  #schedule(): void {
    if (this.#closing !== undefined) return;
    const debounce = this.#o.debounceMs ?? 50;
    const maxDelay = this.#o.maxDelayMs ?? debounce * 20;
    const now = Date.now();
    if (this.#timer === undefined) this.#firstDirtyAt = now;
    else clearTimeout(this.#timer);
    // Trailing debounce, but a never-ending burst still publishes every maxDelay.
    const wait = Math.max(0, Math.min(debounce, this.#firstDirtyAt + maxDelay - now));
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#rebuild();
      this.#push?.publish(this.#version);
    }, wait);
  }

  #rebuild(): void {
    const end = this.metrics.buildSeconds.startTimer();
    const snap = this.#builder.build(this.store);
    end();
    this.#snapshot = snap;
    this.#version++;
    this.#reportInvalid(snap.invalid);
    if (this.#closing === undefined) this.#o.status?.update(this.store, snap.invalid);
  }

  #reportInvalid(invalid: readonly InvalidResource[]): void {
    const keys = new Set<string>();
    const perKind = new Map<string, number>();
    for (const r of invalid) {
      const k = `${r.kind}/${r.namespace ?? ''}/${r.name}: ${r.reason}`;
      keys.add(k);
      perKind.set(r.kind, (perKind.get(r.kind) ?? 0) + 1);
      if (!this.#invalidKeys.has(k)) {
        this.#o.log.warn('invalid resource left out', { kind: r.kind, namespace: r.namespace, name: r.name, reason: r.reason });
      }
    }
    const changed = keys.size !== this.#invalidKeys.size || [...keys].some((k) => !this.#invalidKeys.has(k));
    this.#invalidKeys = keys;
    if (changed && this.#o.onInvalid !== undefined) {
      try {
        this.#o.onInvalid(invalid);
      } catch (e) {
        this.#o.log.error('onInvalid handler failed', { err: e instanceof Error ? e : errorMessage(e) });
      }
    }
    this.metrics.invalidResources.reset();
    for (const [kind, n] of perKind) this.metrics.invalidResources.set({ kind }, n);
  }

  async #signCsr(proxy: ProxyIdentity, identity: string, csr: string): Promise<string[]> {
    const snap = this.#requireSnapshot();
    if (proxy.kind === 'node-agent') {
      if (snap.identitiesByNode.get(proxy.node)?.has(identity) !== true) {
        const why = snap.unenrolledIdentitiesByNode.get(proxy.node)?.has(identity) === true
          ? `the pods with that service account on ${proxy.node} are not enrolled in the mesh (label the namespace or pod ${LABELS.dataplaneMode}=ambient)`
          : `no pod with that service account is scheduled on ${proxy.node}`;
        throw new RondoError('RONDO_E_CSR_FORBIDDEN', `node agent of ${proxy.node} asked for ${identity}, but ${why}`);
      }
    } else {
      const own = formatSpiffeId(this.#o.trustDomain, proxy.namespace, proxy.name);
      if (identity !== own) throw new RondoError('RONDO_E_CSR_FORBIDDEN', `waypoint ${proxy.namespace}/${proxy.name} may only hold ${own}, not ${identity}`);
    }
    try {
      return await this.#o.ca.signCsr(csr, identity);
    } catch (e) {
      throw new RondoError(e instanceof RondoError ? e.code : 'RONDO_E_CSR_MALFORMED', `CSR for ${identity} rejected by the CA: ${errorMessage(e)}`, { cause: e });
    }
  }
}
