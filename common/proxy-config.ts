/**
 * The validated configuration a proxy serves from: what the push client hands to the node
 * agent and the waypoint after every accepted snapshot or delta. Wire objects never go
 * further than the push client; these maps hold schema-checked resources only.
 */
import type {
  AuthorizationPolicy,
  L7Resource,
  MeshConfig,
  PeerAuthentication,
  Service,
  Workload,
} from './wire.ts';

export interface ProxyConfig {
  /** Version of the last snapshot or delta applied. */
  readonly version: number;
  readonly mesh: MeshConfig;
  /** Keyed by pod uid. */
  readonly workloads: ReadonlyMap<string, Workload>;
  /** Keyed by `<namespace>/<name>`. */
  readonly services: ReadonlyMap<string, Service>;
  /** Keyed by `<namespace>/<name>`. */
  readonly authorizationPolicies: ReadonlyMap<string, AuthorizationPolicy>;
  /** Keyed by `<namespace>/<name>`. */
  readonly peerAuthentications: ReadonlyMap<string, PeerAuthentication>;
  /** Keyed by `<kind>/<namespace>/<name>`. */
  readonly l7: ReadonlyMap<string, L7Resource>;
}
