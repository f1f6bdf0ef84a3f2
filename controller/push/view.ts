/**
 * What one proxy is sent (a ProxyView), and the pure diff between two views that becomes a
 * delta message. Views are immutable; unchanged resources keep the same object reference
 * across versions (the model caches its conversions), so the diff is mostly reference checks.
 */
import { REJECTED, RESOURCE_TYPES } from '../../common/wire.ts';
import type { MeshConfig, Rejection, ResourceType } from '../../common/wire.ts';

/** The resources one proxy should hold, as wire values keyed like wire.ts. */
export interface ProxyView {
  readonly mesh: MeshConfig;
  readonly resources: { readonly [T in ResourceType]: ReadonlyMap<string, unknown> };
}

/** A delta between two views, in wire shape (without version/nonce). */
export interface ViewDelta {
  mesh?: MeshConfig;
  upserts: Partial<Record<ResourceType, { key: string; value: unknown }[]>>;
  removes: Partial<Record<ResourceType, string[]>>;
  /** Number of upserted plus removed resources (0: nothing to send but a version bump). */
  size: number;
}

function sameValue(a: unknown, b: unknown): boolean {
  // Reference equality is the fast path; the JSON check catches rebuilt-but-equal objects.
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

/** Computes what turns `from` into `to`. */
export function diffViews(from: ProxyView, to: ProxyView): ViewDelta {
  const delta: ViewDelta = { upserts: {}, removes: {}, size: 0 };
  if (!sameValue(from.mesh, to.mesh)) delta.mesh = to.mesh;
  for (const type of RESOURCE_TYPES) {
    const a = from.resources[type];
    const b = to.resources[type];
    if (a === b) continue;
    const ups: { key: string; value: unknown }[] = [];
    const rms: string[] = [];
    for (const [k, v] of b) {
      const old = a.get(k);
      if (old === undefined || !sameValue(old, v)) ups.push({ key: k, value: v });
    }
    for (const k of a.keys()) if (!b.has(k)) rms.push(k);
    if (ups.length > 0) delta.upserts[type] = ups;
    if (rms.length > 0) delta.removes[type] = rms;
    delta.size += ups.length + rms.length;
  }
  return delta;
}

/** Wire form of a whole view (the `resources` of a snapshot). */
export function viewResources(v: ProxyView): Record<ResourceType, { key: string; value: unknown }[]> {
  const out = {} as Record<ResourceType, { key: string; value: unknown }[]>;
  for (const type of RESOURCE_TYPES) out[type] = [...v.resources[type]].map(([key, value]) => ({ key, value }));
  return out;
}

/** An empty view with the given mesh settings. */
export function emptyView(mesh: MeshConfig): ProxyView {
  return {
    mesh,
    resources: { workloads: new Map(), services: new Map(), authorizationPolicies: new Map(), peerAuthentications: new Map(), l7: new Map() },
  };
}

/**
 * What a proxy holds after NACKing `rejected` of the message that took it from `from` to
 * `to` (`from` undefined: a snapshot), by the rules of Rejection in common/wire.ts: a
 * refused resource keeps its `from` value (absent after a snapshot), a refused mesh keeps
 * `from`'s mesh, a refused config keeps all of `from`. Undefined when that is not known
 * here (a snapshot's mesh or whole config refused: the proxy kept something older, or
 * nothing; a rejection type this controller does not know): the proxy then needs a snapshot.
 * Unchanged types keep their Map objects, so later diffs still skip them by reference.
 */
export function heldView(from: ProxyView | undefined, to: ProxyView, rejected: readonly Rejection[]): ProxyView | undefined {
  if (rejected.length === 0) return to;
  const known = new Set<string>([...RESOURCE_TYPES, REJECTED.mesh, REJECTED.config]);
  if (rejected.some((r) => !known.has(r.type))) return undefined;
  if (rejected.some((r) => r.type === REJECTED.config)) return from;
  let mesh = to.mesh;
  if (rejected.some((r) => r.type === REJECTED.mesh)) {
    if (from === undefined) return undefined;
    mesh = from.mesh;
  }
  const resources: { [T in ResourceType]: ReadonlyMap<string, unknown> } = { ...to.resources };
  for (const type of RESOURCE_TYPES) {
    const keys = rejected.filter((r) => r.type === type).map((r) => r.key);
    if (keys.length === 0) continue;
    const next = new Map(resources[type]);
    for (const k of keys) {
      const old = from?.resources[type].get(k);
      if (old === undefined) next.delete(k);
      else next.set(k, old);
    }
    resources[type] = next;
  }
  return { mesh, resources };
}
