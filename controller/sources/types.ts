/**
 * What every source (Kubernetes informers, a directory of YAML) feeds: plain Kubernetes
 * objects into one store. The model never knows which source an object came from.
 */

/** The kinds the controller reads. */
export const WATCHED_KINDS = [
  'Namespace',
  'Node',
  'Pod',
  'Service',
  'EndpointSlice',
  'Gateway',
  'HTTPRoute',
  'GRPCRoute',
  'AuthorizationPolicy',
  'PeerAuthentication',
  'TrafficPolicy',
] as const;
export type WatchedKind = (typeof WATCHED_KINDS)[number];

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  resourceVersion?: string;
  generation?: number;
}

/** A Kubernetes object as the API server returns it (JSON). */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec?: unknown;
  status?: unknown;
  [field: string]: unknown;
}

/** The store side a source writes into. */
export interface ResourceSink {
  /** Adds or replaces one object (by kind, namespace, name). */
  upsert(obj: KubeObject): void;
  /** Removes one object; unknown objects are ignored. */
  remove(kind: string, namespace: string | undefined, name: string): void;
  /** Replaces every object of a kind at once (after a list or re-list). */
  replaceAll(kind: string, objects: KubeObject[]): void;
}

/** Every source has create()/run() semantics: start() resolves after the first full sync. */
export interface Source {
  start(): Promise<void>;
  close(): Promise<void>;
}
