/** Pods -> Workloads (pure): enrollment, identity, owner name, labels (selectors, telemetry), waypoint. */
import { Workload } from '../../common/wire.ts';
import { describeZodError } from '../../common/wire.ts';
import { formatSpiffeId } from '../../common/spiffe.ts';
import type { KubeObject } from '../sources/types.ts';
import { LABELS, labelsOf, waypointFrom } from './labels.ts';

/** Result of converting one pod: a workload, nothing (not served), or an error. */
export type PodResult = { workload: Workload } | { skip: string } | { error: string };

interface PodShape {
  spec?: { nodeName?: unknown; serviceAccountName?: unknown; serviceAccount?: unknown };
  status?: { phase?: unknown; podIP?: unknown; podIPs?: unknown };
  metadata: { uid?: unknown; ownerReferences?: unknown };
}

/** True when the pod's namespace (or the pod itself) enrolls it and the pod does not opt out. */
export function isEnrolled(podLabels: Record<string, string>, nsLabels: Record<string, string>): boolean {
  const own = podLabels[LABELS.dataplaneMode];
  if (own === 'none') return false;
  if (own === 'ambient') return true;
  return nsLabels[LABELS.dataplaneMode] === 'ambient';
}

/** Name of the owning Deployment (ReplicaSet name minus its hash), else app label, else pod name. */
export function workloadNameOf(pod: KubeObject, podLabels: Record<string, string>): string {
  const owners = (pod as PodShape).metadata.ownerReferences;
  if (Array.isArray(owners)) {
    for (const o of owners as { kind?: unknown; name?: unknown; controller?: unknown }[]) {
      if (typeof o.name !== 'string') continue;
      if (o.kind === 'ReplicaSet') return o.name.replace(/-[a-z0-9]{5,10}$/, '');
      if (o.kind === 'StatefulSet' || o.kind === 'DaemonSet' || o.kind === 'Job') return o.name;
    }
  }
  return podLabels['app'] ?? pod.metadata.name;
}

/** Converts a pod; `trustDomain` forms the SPIFFE identity. */
export function podToWorkload(pod: KubeObject, ns: KubeObject | undefined, trustDomain: string): PodResult {
  const p = pod as PodShape & KubeObject;
  const namespace = pod.metadata.namespace;
  if (namespace === undefined) return { error: 'metadata.namespace: missing' };
  const phase = p.status?.phase;
  if (phase !== 'Running') return { skip: `phase ${typeof phase === 'string' ? phase : 'unknown'}` };
  const ips: string[] = [];
  if (Array.isArray(p.status?.podIPs)) {
    for (const e of p.status.podIPs as { ip?: unknown }[]) if (typeof e.ip === 'string') ips.push(e.ip);
  }
  if (ips.length === 0 && typeof p.status?.podIP === 'string' && p.status.podIP !== '') ips.push(p.status.podIP);
  if (ips.length === 0) return { skip: 'no pod IP yet' };
  const node = p.spec?.nodeName;
  if (typeof node !== 'string' || node === '') return { skip: 'not scheduled' };
  const sa = typeof p.spec?.serviceAccountName === 'string' ? p.spec.serviceAccountName
    : typeof p.spec?.serviceAccount === 'string' ? p.spec.serviceAccount : 'default';
  const podLabels = labelsOf(pod);
  const nsLabels = labelsOf(ns);
  const uid = typeof p.metadata.uid === 'string' && p.metadata.uid !== '' ? p.metadata.uid : `${namespace}/${pod.metadata.name}`;
  const waypoint = waypointFrom(podLabels, nsLabels, namespace);
  const candidate = {
    uid,
    namespace,
    name: pod.metadata.name,
    workloadName: workloadNameOf(pod, podLabels),
    serviceAccount: sa,
    identity: formatSpiffeId(trustDomain, namespace, sa),
    ips,
    node,
    labels: podLabels,
    enrolled: isEnrolled(podLabels, nsLabels),
    ...(waypoint !== undefined ? { waypoint } : {}),
  };
  const r = Workload.safeParse(candidate);
  if (!r.success) return { error: describeZodError(r.error) };
  return { workload: Object.freeze(r.data) };
}
