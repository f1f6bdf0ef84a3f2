/** Label names users put on Namespaces, Pods and Services to steer the mesh. */
export const LABELS = {
  /** `ambient` on a Namespace (or Pod) enrolls; `none` on a Pod opts it out. */
  dataplaneMode: 'rondo.dev/dataplane-mode',
  /** Waypoint (Gateway name) for a Namespace, Service or Pod; `none` disables. */
  useWaypoint: 'rondo.dev/use-waypoint',
  /** Namespace of that waypoint when it is not the resource's own. */
  useWaypointNamespace: 'rondo.dev/use-waypoint-namespace',
  /** EndpointSlice -> Service link set by Kubernetes. */
  serviceName: 'kubernetes.io/service-name',
} as const;

/** Kind, namespace, name and reason of a resource the model left out. */
export interface InvalidResource {
  kind: string;
  namespace: string | undefined;
  name: string;
  reason: string;
  /** Status condition reason when not the generic `Invalid` (e.g. `UnsupportedValue`). */
  statusReason?: string;
}

/** Reads a string map field (labels) defensively: sources may deliver anything. */
export function labelsOf(obj: { metadata: { labels?: unknown } } | undefined): Record<string, string> {
  const l = obj?.metadata.labels;
  if (l === null || typeof l !== 'object') return {};
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(l as Record<string, unknown>)) if (typeof v === 'string') out[k] = v;
  return out;
}

/** Waypoint named by labels (object first, then its namespace); undefined when none/absent. */
export function waypointFrom(
  objLabels: Record<string, string>,
  nsLabels: Record<string, string>,
  namespace: string,
): { namespace: string; name: string } | undefined {
  const own = objLabels[LABELS.useWaypoint];
  const src = own !== undefined ? objLabels : nsLabels;
  const name = src[LABELS.useWaypoint];
  if (name === undefined || name === '' || name === 'none') return undefined;
  return { namespace: src[LABELS.useWaypointNamespace] ?? namespace, name };
}
