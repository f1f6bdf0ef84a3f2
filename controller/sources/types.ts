/**
 * What every source (Kubernetes informers, a directory of YAML) feeds: plain Kubernetes
 * objects into one store. The model never knows which source an object came from.
 */
import type { KubeObject } from '../../common/kube-object.ts';

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

// Defined in common/ (the lab writes them too); re-exported for the controller's own modules.
export type { KubeObject, ObjectMeta } from '../../common/kube-object.ts';

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
