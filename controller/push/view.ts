/**
 * What one proxy is sent (a ProxyView), and the pure diff between two views that becomes a
 * delta message. Views are immutable; unchanged resources keep the same object reference
 * across versions (the model caches its conversions), so the diff is mostly reference checks.
 */
import { RESOURCE_TYPES } from '../../common/wire.ts';
import type { MeshConfig, ResourceType } from '../../common/wire.ts';

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
