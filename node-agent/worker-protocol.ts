/**
 * Messages between the agent's primary process (push client, certificates, capture) and its
 * data-path workers. Sent over the cluster IPC channel with `serialization: 'advanced'`, so
 * the ProxyConfig's Maps travel as they are. Workers build their own AgentState and
 * SecureContexts from these.
 */
import type { ProxyConfig } from '../common/proxy-config.ts';
import type { OpenConnection } from './dataplane.ts';

/** A workload certificate in transit (no SecureContext: it cannot cross processes). */
export interface CertMessageEntry {
  identity: string;
  keyPem: string;
  chain: string[];
  trustBundle: string[];
  notAfter: string;
}

/** Primary -> worker. */
export type ToWorker =
  | { type: 'config'; config: ProxyConfig }
  | { type: 'certs'; certs: CertMessageEntry[] }
  | { type: 'drain'; deadlineMs: number }
  | { type: 'req'; id: number; what: 'connections' | 'metrics' };

/** Worker -> primary. */
export type FromWorker =
  | { type: 'ready'; ports: { outbound: number; inbound: number; hbone: number } }
  | { type: 'fatal'; message: string; code?: string }
  | { type: 'res'; id: number; connections?: OpenConnection[]; metrics?: unknown };

/** Worker settings, passed as one JSON argv element. */
export interface WorkerSettings {
  node: string;
  host: string;
  ports: { outbound: number; inbound: number; hbone: number };
  connectTimeoutMs: number;
  poolIdleMs: number;
  /** seconds of quiet before the worker hands garbage back (0: never) */
  idleReclaimS: number;
}
