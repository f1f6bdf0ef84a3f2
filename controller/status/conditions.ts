/**
 * Status conditions for the resources whose status the controller owns (Rondo CRDs and
 * Gateway API routes): a pure plan of which objects need which `Accepted` condition,
 * compared with what the object already shows, so a steady state writes nothing.
 */
import type { StoreReader } from '../store.ts';
import type { InvalidResource } from '../model/labels.ts';
import type { KubeObject } from '../sources/types.ts';
import { isOurParentRef, rawParentRefs, waypointGateways } from '../model/l7.ts';

/** Where a kind's status lives on the API and how its conditions are shaped. */
export interface StatusKind {
  group: string;
  version: string;
  plural: string;
  /** `conditions`: status.conditions (Rondo CRDs); `parents`: status.parents[].conditions (routes). */
  shape: 'conditions' | 'parents';
}

/** The kinds whose status the controller writes; every other kind is never touched. */
export const STATUS_KINDS: Readonly<Record<string, StatusKind>> = {
  AuthorizationPolicy: { group: 'security.rondo.dev', version: 'v1alpha1', plural: 'authorizationpolicies', shape: 'conditions' },
  PeerAuthentication: { group: 'security.rondo.dev', version: 'v1alpha1', plural: 'peerauthentications', shape: 'conditions' },
  TrafficPolicy: { group: 'traffic.rondo.dev', version: 'v1alpha1', plural: 'trafficpolicies', shape: 'conditions' },
  HTTPRoute: { group: 'gateway.networking.k8s.io', version: 'v1', plural: 'httproutes', shape: 'parents' },
  GRPCRoute: { group: 'gateway.networking.k8s.io', version: 'v1', plural: 'grpcroutes', shape: 'parents' },
};

/** Gateway API `controllerName` under which the controller reports route status. */
export const CONTROLLER_NAME = 'rondo.dev/controller';

/** A metav1.Condition. */
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}

/** One status merge patch to send. */
export interface StatusPatch {
  kind: string;
  namespace: string;
  name: string;
  /** Body for `application/merge-patch+json` on the status subresource. */
  body: { status: Record<string, unknown> };
  /** What the patch sets, for "only on change" bookkeeping: `<uid>/<gen>/<status>/<message>`. */
  signature: string;
  accepted: boolean;
}

interface ParentStatus { parentRef?: unknown; controllerName?: unknown; conditions?: unknown }

function conditionsOf(v: unknown): Condition[] {
  return Array.isArray(v) ? (v.filter((c) => c !== null && typeof c === 'object') as Condition[]) : [];
}

/** Accepted condition as it should read now; keeps lastTransitionTime when status is unchanged. */
function accepted(invalid: InvalidResource | undefined, generation: number | undefined, prev: Condition | undefined, now: string): Condition {
  const status = invalid === undefined ? 'True' : 'False';
  return {
    type: 'Accepted',
    status,
    reason: invalid === undefined ? 'Accepted' : (invalid.statusReason ?? 'Invalid'),
    message: invalid === undefined ? 'Accepted by the Rondo controller' : invalid.reason,
    ...(generation !== undefined ? { observedGeneration: generation } : {}),
    lastTransitionTime: prev?.status === status ? prev.lastTransitionTime : now,
  };
}

function sameCondition(a: Condition | undefined, b: Condition): boolean {
  return a !== undefined && a.status === b.status && a.reason === b.reason && a.message === b.message && a.observedGeneration === b.observedGeneration;
}

/**
 * Plans the status writes: an invalid object gets `Accepted=False/Invalid` with the reason;
 * a valid object gets `Accepted=True` only if it currently shows Accepted=False (a flip), so
 * objects that were always fine are never written. `written` holds signatures already sent
 * (the watch may not have delivered them yet), so they are not sent twice.
 */
export function planStatus(store: StoreReader, invalid: readonly InvalidResource[], written: ReadonlyMap<string, string>, now: Date): StatusPatch[] {
  const bad = new Map<string, InvalidResource>();
  for (const r of invalid) bad.set(`${r.kind}/${r.namespace ?? ''}/${r.name}`, r);
  const out: StatusPatch[] = [];
  const ts = now.toISOString().replace(/\.\d+Z$/, 'Z');
  const waypoints = waypointGateways(store);
  for (const [kind, sk] of Object.entries(STATUS_KINDS)) {
    for (const obj of store.list(kind).values()) {
      const ns = obj.metadata.namespace;
      if (ns === undefined) continue;
      const key = `${kind}/${ns}/${obj.metadata.name}`;
      const inv = bad.get(key);
      const p = sk.shape === 'conditions' ? planConditions(obj, inv, ts) : planParents(obj, inv, ts, waypoints);
      if (p === undefined) continue;
      const signature = `${obj.metadata.uid ?? ''}/${obj.metadata.generation ?? ''}/${inv === undefined ? 'True' : 'False'}/${inv?.statusReason ?? ''}/${inv?.reason ?? ''}`;
      if (written.get(key) === signature) continue;
      out.push({ kind, namespace: ns, name: obj.metadata.name, body: { status: p }, signature, accepted: inv === undefined });
    }
  }
  return out;
}

function statusOf(obj: KubeObject): Record<string, unknown> {
  return obj.status !== null && typeof obj.status === 'object' ? (obj.status as Record<string, unknown>) : {};
}

function planConditions(obj: KubeObject, inv: InvalidResource | undefined, now: string): Record<string, unknown> | undefined {
  const conds = conditionsOf(statusOf(obj)['conditions']);
  const prev = conds.find((c) => c.type === 'Accepted');
  if (inv === undefined && prev?.status !== 'False') return undefined;
  const want = accepted(inv, obj.metadata.generation, prev, now);
  if (sameCondition(prev, want)) return undefined;
  // A merge patch replaces the whole list: keep the other condition types as they are.
  return { conditions: [...conds.filter((c) => c.type !== 'Accepted'), want] };
}

function planParents(obj: KubeObject, inv: InvalidResource | undefined, now: string, waypoints: ReadonlySet<string>): Record<string, unknown> | undefined {
  // Only the parents that are Rondo's: another implementation's Gateway reports its own status.
  const refs = rawParentRefs(obj).filter((r) => isOurParentRef(r, obj.metadata.namespace ?? '', waypoints));
  if (refs.length === 0) return undefined; // route status is per parent: nothing to attach it to
  const parents = Array.isArray(statusOf(obj)['parents']) ? statusOf(obj)['parents'] as ParentStatus[] : [];
  const ours = parents.filter((p) => p.controllerName === CONTROLLER_NAME);
  const prevOf = (ref: unknown): Condition | undefined =>
    conditionsOf(ours.find((p) => JSON.stringify(p.parentRef) === JSON.stringify(ref))?.conditions).find((c) => c.type === 'Accepted');
  if (inv === undefined && !refs.some((r) => prevOf(r)?.status === 'False')) return undefined;
  let changed = ours.length !== refs.length;
  const mine = refs.map((ref) => {
    const prev = prevOf(ref);
    const want = accepted(inv, obj.metadata.generation, prev, now);
    if (!sameCondition(prev, want)) changed = true;
    return { parentRef: ref, controllerName: CONTROLLER_NAME, conditions: [want] };
  });
  if (!changed) return undefined;
  // Other controllers' entries stay; the list is replaced whole by a merge patch.
  return { parents: [...parents.filter((p) => p.controllerName !== CONTROLLER_NAME), ...mine] };
}
