/**
 * Kubernetes objects as plain JSON, the shape the API server returns and YAML manifests hold.
 * Shared by the controller (its sources and store) and the lab (which writes the state
 * directory the controller's file source reads), so neither imports the other.
 */

/** The metadata fields Rondo reads. */
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
