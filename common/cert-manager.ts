/**
 * Proxy-side workload certificates: generates a key per identity locally (it never leaves the
 * proxy), gets it signed by the controller, keeps one ready-built TLS 1.3 SecureContext per
 * certificate, renews at half-life with jittered exponential-backoff retries, and forgets
 * identities whose pods left. Open connections keep the context they were made with; only
 * new connections pick up a renewed certificate.
 */
import { EventEmitter } from 'node:events';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import tls from 'node:tls';
import { Counter, Gauge, type Registry } from 'prom-client';
import { RondoError, errorMessage } from './errors.ts';
import type { Logger } from './log.ts';
import { generateKeyAndCsr } from './pki.ts';
import { backoffDelay } from './backoff.ts';
import { parseSpiffeId, spiffeIdOf } from './spiffe.ts';

/** A signed workload certificate with its private key and a TLS context built once. */
export interface WorkloadCert {
  identity: string;
  keyPem: string;
  /** Leaf first, then intermediates (if any). */
  chain: string[];
  notAfter: Date;
  /** Roots the context verifies peers against (so this object is also an HBONE ServerCredentials). */
  trustBundle: readonly string[];
  /** Key + full chain + trust bundle as `ca`, TLS 1.3 only; pass as `secureContext`. */
  secureContext: tls.SecureContext;
}

/** Timer functions, injectable so tests run renewals without sleeping. */
export interface CertTimers {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

/** Options of {@link CertManager}. */
export interface CertManagerOptions {
  /** Sends a CSR to the controller; resolves with the chain, leaf first (PushClient.sign). */
  sign: (identity: string, csrPem: string) => Promise<string[]>;
  log: Logger;
  /** Clock in ms since the epoch. */
  now?: () => number;
  setTimer?: CertTimers;
  /** Uniform [0,1) source for jitter. */
  random?: () => number;
  registry?: Registry;
  /** First retry delay after a failed renewal (default 1 s); doubles per failure. */
  retryInitialMs?: number;
  /** Cap of the retry delay (default 5 min). */
  retryMaxMs?: number;
}

/** Events of {@link CertManager}: 'rotated' when an identity's certificate or its context changed. */
export interface CertManagerEvents {
  rotated: [identity: string];
}

interface Entry {
  cert?: WorkloadCert;
  /** In-flight issuance or renewal; concurrent ensure() calls share it. */
  pending?: Promise<WorkloadCert> | undefined;
  timer?: unknown;
  failures: number;
}

/** Fraction of the half-life by which renewal is spread, so a node's pods do not renew in lockstep. */
const RENEW_JITTER = 0.1;
/** setTimeout's largest delay. */
const MAX_TIMER_MS = 2 ** 31 - 1;

const defaultTimers: CertTimers = {
  set: (fn, ms) => setTimeout(fn, ms).unref(),
  clear: (h) => clearTimeout(h as NodeJS.Timeout),
};

/**
 * Throws RONDO_E_INVALID naming the first entry of `pems` that is not a PEM CA certificate
 * (or when there is none): what a proxy checks before it trusts a pushed bundle.
 */
export function checkTrustBundle(pems: readonly string[]): void {
  if (pems.length === 0) throw new RondoError('RONDO_E_INVALID', 'trust bundle is empty: the mesh config must carry at least one root');
  pems.forEach((pem, i) => {
    let c: X509Certificate;
    try {
      c = new X509Certificate(pem);
    } catch (err) {
      throw new RondoError('RONDO_E_INVALID', `trust bundle entry ${i} is not a PEM certificate: ${errorMessage(err)}`, { cause: err });
    }
    if (!c.ca) throw new RondoError('RONDO_E_INVALID', `trust bundle entry ${i} (${(c.subject ?? '').replace(/\n/g, ', ') || 'no subject'}) is not a CA certificate`);
  });
}

/** Keeps the workload certificates a proxy presents, renewed before they expire. */
export class CertManager extends EventEmitter<CertManagerEvents> {
  readonly #sign: CertManagerOptions['sign'];
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #timers: CertTimers;
  readonly #random: () => number;
  readonly #retryInitialMs: number;
  readonly #retryMaxMs: number;
  readonly #entries = new Map<string, Entry>();
  #bundle: string[] = [];
  #closed = false;
  readonly #expiry: Gauge<'identity'> | undefined;
  readonly #renewals: Counter<'result'> | undefined;

  constructor(o: CertManagerOptions) {
    super();
    this.#sign = o.sign;
    this.#log = o.log;
    this.#now = o.now ?? Date.now;
    this.#timers = o.setTimer ?? defaultTimers;
    this.#random = o.random ?? Math.random;
    this.#retryInitialMs = o.retryInitialMs ?? 1000;
    this.#retryMaxMs = o.retryMaxMs ?? 5 * 60 * 1000;
    if (o.registry !== undefined) {
      const r = o.registry;
      // Reuse on a shared registry: registering a name twice throws.
      this.#expiry = (r.getSingleMetric('rondo_cert_expiry_timestamp_seconds') as Gauge<'identity'> | undefined) ?? new Gauge({
        name: 'rondo_cert_expiry_timestamp_seconds', help: 'notAfter of the current workload certificate, per SPIFFE identity',
        labelNames: ['identity'], registers: [r],
      });
      this.#renewals = (r.getSingleMetric('rondo_cert_renewals_total') as Counter<'result'> | undefined) ?? new Counter({
        name: 'rondo_cert_renewals_total', help: 'Workload certificate signings (first issue and renewals) by result (success|failure)',
        labelNames: ['result'], registers: [r],
      });
    }
  }

  /**
   * Sets the PEM roots peers are verified against; when they change, every context is
   * rebuilt and 'rotated' is emitted per identity (new connections use the new bundle).
   */
  setTrustBundle(pems: string[]): void {
    if (pems.length > 0 && pems.join('\n') === this.#bundle.join('\n')) return;
    // Check every root before touching anything, so a bad push leaves the old bundle in force.
    checkTrustBundle(pems);
    this.#bundle = [...pems];
    for (const [identity, e] of this.#entries) {
      if (e.cert === undefined) continue;
      e.cert = this.#build(identity, e.cert.keyPem, e.cert.chain, e.cert.notAfter);
      this.emit('rotated', identity);
    }
  }

  /** The current certificate for an identity, issuing it first if needed; concurrent calls share one CSR. */
  ensure(identity: string): Promise<WorkloadCert> {
    if (this.#closed) return Promise.reject(new RondoError('RONDO_E_CLOSED', `certificate manager is closed; cannot issue ${identity}`));
    let e = this.#entries.get(identity);
    if (e?.cert !== undefined && e.cert.notAfter.getTime() > this.#now()) return Promise.resolve(e.cert);
    if (e?.pending !== undefined) return e.pending;
    try {
      parseSpiffeId(identity);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    if (e === undefined) {
      e = { failures: 0 };
      this.#entries.set(identity, e);
    }
    return this.#issue(identity, e);
  }

  /** The current, unexpired certificate of an identity, or undefined (then call ensure()). */
  get(identity: string): WorkloadCert | undefined {
    const c = this.#entries.get(identity)?.cert;
    return c !== undefined && c.notAfter.getTime() > this.#now() ? c : undefined;
  }

  /** Identities with a current certificate. */
  identities(): string[] {
    return [...this.#entries].filter(([, e]) => e.cert !== undefined).map(([id]) => id);
  }

  /** Keeps only the given identities (pods still on this node); the rest are forgotten and not renewed. */
  retain(identities: ReadonlySet<string>): void {
    for (const id of [...this.#entries.keys()]) {
      if (!identities.has(id)) this.#forget(id);
    }
  }

  /** Stops all renewals and forgets every certificate; idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const id of [...this.#entries.keys()]) this.#forget(id);
  }

  #forget(identity: string): void {
    const e = this.#entries.get(identity);
    if (e === undefined) return;
    if (e.timer !== undefined) this.#timers.clear(e.timer);
    this.#entries.delete(identity);
    this.#expiry?.remove({ identity });
    this.#log.debug('forgot workload certificate', { identity });
  }

  #issue(identity: string, e: Entry): Promise<WorkloadCert> {
    const p = this.#signNew(identity).then(
      (cert) => {
        this.#renewals?.inc({ result: 'success' });
        // Forgotten (retain/close) while the CSR was in flight: hand it out, keep nothing.
        if (this.#entries.get(identity) !== e) return cert;
        const renewed = e.cert !== undefined;
        e.pending = undefined;
        e.cert = cert;
        e.failures = 0;
        this.#expiry?.set({ identity }, cert.notAfter.getTime() / 1000);
        this.#schedule(identity, e, this.#renewDelay(cert));
        this.#log.info(renewed ? 'renewed workload certificate' : 'issued workload certificate', { identity, notAfter: cert.notAfter.toISOString() });
        if (renewed) this.emit('rotated', identity);
        return cert;
      },
      (err: unknown) => {
        this.#renewals?.inc({ result: 'failure' });
        if (this.#entries.get(identity) === e) {
          e.pending = undefined;
          e.failures++;
          if (e.cert !== undefined) {
            const delay = this.#retryDelay(e.failures, e.cert);
            this.#log.warn('workload certificate renewal failed; retrying', { identity, error: err, failures: e.failures, retryInMs: delay, notAfter: e.cert.notAfter.toISOString() });
            this.#schedule(identity, e, delay);
          } else {
            // Never issued: nothing to renew; the next ensure() (next connection) tries again.
            this.#entries.delete(identity);
            this.#log.warn('workload certificate issuance failed', { identity, error: err });
          }
        }
        throw err;
      },
    );
    e.pending = p;
    return p;
  }

  async #signNew(identity: string): Promise<WorkloadCert> {
    const { keyPem, csrPem } = await generateKeyAndCsr(identity);
    let chain: string[];
    try {
      chain = await this.#sign(identity, csrPem);
    } catch (err) {
      throw new RondoError('RONDO_E_CERT_SIGN', `signing the certificate for ${identity} failed: ${errorMessage(err)} (is the controller reachable, and is the pod scheduled on this node?)`, { cause: err });
    }
    const leafPem = chain[0];
    if (!Array.isArray(chain) || leafPem === undefined || !chain.every((c) => typeof c === 'string')) {
      throw new RondoError('RONDO_E_CERT_INVALID', `controller returned no certificate chain for ${identity}`);
    }
    let leaf: X509Certificate;
    try {
      leaf = new X509Certificate(leafPem);
    } catch (err) {
      throw new RondoError('RONDO_E_CERT_INVALID', `controller returned an unparsable certificate for ${identity}: ${errorMessage(err)}`, { cause: err });
    }
    const got = spiffeIdOf(leaf);
    if (got !== identity) {
      throw new RondoError('RONDO_E_CERT_INVALID', `controller returned a certificate for ${got ?? 'no SPIFFE ID'}, expected ${identity}`);
    }
    if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) {
      throw new RondoError('RONDO_E_CERT_INVALID', `controller returned a certificate for ${identity} that does not match the key of the CSR`);
    }
    const notAfter = leaf.validToDate;
    if (notAfter.getTime() <= this.#now()) {
      throw new RondoError('RONDO_E_CERT_INVALID', `controller returned a certificate for ${identity} that expired at ${notAfter.toISOString()}: check the controller's clock and --cert-ttl`);
    }
    return this.#build(identity, keyPem, chain, notAfter);
  }

  #build(identity: string, keyPem: string, chain: string[], notAfter: Date): WorkloadCert {
    if (this.#bundle.length === 0) {
      throw new RondoError('RONDO_E_NO_TRUST_BUNDLE', `no trust bundle yet for ${identity}: call setTrustBundle() with the mesh config's trustBundle first`);
    }
    const secureContext = tls.createSecureContext({
      key: keyPem, cert: chain.join(''), ca: this.#bundle, minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3',
    });
    return { identity, keyPem, chain: [...chain], notAfter, trustBundle: this.#bundle, secureContext };
  }

  /** Half of the remaining life from issue, spread by +/- RENEW_JITTER. */
  #renewDelay(cert: WorkloadCert): number {
    const half = (cert.notAfter.getTime() - this.#now()) / 2;
    return half * (1 + (this.#random() * 2 - 1) * RENEW_JITTER);
  }

  /**
   * The common backoff (backoff.ts), capped also at half the remaining life so a short-lived
   * cert still gets several tries before it expires.
   */
  #retryDelay(failures: number, cert: WorkloadCert): number {
    const jittered = backoffDelay(failures - 1, { initialMs: this.#retryInitialMs, maxMs: this.#retryMaxMs }, this.#random);
    const remaining = cert.notAfter.getTime() - this.#now();
    return Math.min(jittered, Math.max(this.#retryInitialMs, remaining / 2));
  }

  #schedule(identity: string, e: Entry, delayMs: number): void {
    if (e.timer !== undefined) this.#timers.clear(e.timer);
    e.timer = this.#timers.set(() => {
      e.timer = undefined;
      if (this.#entries.get(identity) !== e || e.pending !== undefined) return;
      // Failures are logged, counted and rescheduled inside #issue; nothing to add here.
      this.#issue(identity, e).catch(() => undefined);
    }, Math.max(0, Math.min(MAX_TIMER_MS, delayMs)));
  }
}
