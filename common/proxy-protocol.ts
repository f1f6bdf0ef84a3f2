/**
 * What a proxy's process shell (proxy-shell.ts in the primary, proxy-worker.ts in each
 * data-path worker) runs, and the messages the two sides exchange. The shell is the same for
 * every proxy (the node agent, the waypoint); what differs is the data plane, which each
 * deployable supplies as a PlaneFactory. Messages travel over the cluster IPC channel with
 * `serialization: 'advanced'`, so a ProxyConfig's Maps arrive as they are; a SecureContext
 * cannot cross processes, so certificates travel as PEMs and each worker builds its own.
 */
import type tls from 'node:tls';
import type { Registry } from 'prom-client';
import type { Logger } from './log.ts';
import type { ProxyConfig } from './proxy-config.ts';

/**
 * A workload certificate as a plane uses it. CertManager's WorkloadCert is one; so is what a
 * worker builds from a CertEntry.
 */
export interface ProxyCert {
  readonly identity: string;
  readonly keyPem: string;
  /** Leaf first, then intermediates. */
  readonly chain: readonly string[];
  /** Roots peers are verified against. */
  readonly trustBundle: readonly string[];
  readonly notAfter: Date;
  /** Key, chain and trust bundle, TLS 1.3 only. */
  readonly secureContext: tls.SecureContext;
}

/**
 * One process's data path, as the shell drives it. `Ports` is what it bound (port 0
 * resolved), `Conn` one open connection as the admin page lists it.
 */
export interface ProxyPlane<Ports = unknown, Conn = unknown> {
  /** Bound listener ports. */
  readonly ports: Ports;
  /** The registry this plane records into; a worker's is summed into the primary's /metrics. */
  readonly registry: Registry;
  /** Serves from this config from now on (a throw keeps the previous one: logged in a worker). */
  setConfig(config: ProxyConfig): void;
  /** Replaces the whole certificate set. */
  setCerts(certs: readonly ProxyCert[]): void;
  /** Open connections, for the admin page. */
  connections(): Conn[];
  /** Stops accepting, lets open connections finish until `deadlineMs`, then forces. Idempotent. */
  close(deadlineMs: number): Promise<void>;
}

/** What a PlaneFactory is given. */
export interface PlaneOptions<Settings> {
  /**
   * Where the plane logs: in-process the shell's logger's child `dataplane`, in a worker the
   * worker's own logger (`<component>.worker-<n>`).
   */
  log: Logger;
  /** The deployable's own settings, as given to ProxyShell.create (JSON in a worker). */
  settings: Settings;
  /** Share every listening port with sibling workers (SO_REUSEPORT): true in a worker, false in-process. */
  reusePort: boolean;
}

/**
 * Builds one process's data plane: binds every listener and fails loudly (a rejection in a
 * worker reaches ProxyShell.create with its error code).
 */
export type PlaneFactory<Settings, Ports = unknown, Conn = unknown> = (o: PlaneOptions<Settings>) => Promise<ProxyPlane<Ports, Conn>>;

/** A certificate in transit: the PEMs only. */
export interface CertEntry {
  identity: string;
  keyPem: string;
  chain: string[];
  trustBundle: string[];
  /** ISO 8601. */
  notAfter: string;
}

/** Primary -> worker. */
export type ToWorker =
  | { type: 'config'; config: ProxyConfig }
  | { type: 'certs'; certs: CertEntry[] }
  | { type: 'drain'; deadlineMs: number }
  | { type: 'req'; id: number; what: 'connections' | 'metrics' };

/** Worker -> primary. */
export type FromWorker =
  | { type: 'ready'; ports: unknown }
  | { type: 'fatal'; message: string; code?: string }
  | { type: 'res'; id: number; connections?: unknown[]; metrics?: unknown };

/** What a worker is started with: one JSON argv element. */
export interface WorkerArgs<Settings> {
  settings: Settings;
  /** Seconds of quiet before the worker hands garbage back (0: never); common/reclaim.ts. */
  idleReclaimS: number;
}

/** Environment variable holding a worker's index (0 … workers-1), kept across restarts. */
export const WORKER_ID_ENV = 'RONDO_WORKER_ID';
