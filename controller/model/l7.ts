/**
 * HTTPRoutes, GRPCRoutes, TrafficPolicies and waypoint Gateways -> wire L7 resources (pure).
 * Route and policy specs are validated in full with the schemas the waypoint uses
 * (common/gateway-api.ts, common/traffic-policy.ts); a bad one is left out with a reason that
 * names the field, and shows in status and /debug/invalid.
 *
 * Only routes that attach to Rondo are read: a Service parent (GAMMA), or a Gateway of class
 * rondo-waypoint. A route for another implementation's ingress Gateway may use features
 * Rondo rejects; it is not Rondo's to judge or to write status on.
 */
import { z } from 'zod';
import { GRPCRouteSpec, HTTPRouteSpec, unsupportedReason } from '../../common/gateway-api.ts';
import { TrafficPolicySpec } from '../../common/traffic-policy.ts';
import { describeZodError } from '../../common/wire.ts';
import type { L7Resource } from '../../common/wire.ts';
import type { KubeObject } from '../sources/types.ts';
import type { StoreReader } from '../store.ts';
import type { PolicyResult } from './policies.ts';

/** Kinds carried to waypoints as L7 resources. */
export const L7_KINDS = ['HTTPRoute', 'GRPCRoute', 'TrafficPolicy', 'Gateway'] as const;
/** Route kinds: read only when attached to Rondo (see isOurRoute). */
export const ROUTE_KINDS: ReadonlySet<string> = new Set(['HTTPRoute', 'GRPCRoute']);
/** The GatewayClass of Rondo's waypoints. */
export const WAYPOINT_CLASS = 'rondo-waypoint';

const GATEWAY_GROUP = 'gateway.networking.k8s.io';
const RFC3339 = z.iso.datetime({ offset: true });

/** `<namespace>/<name>` of every Gateway of class rondo-waypoint. */
export function waypointGateways(store: StoreReader): Set<string> {
  const out = new Set<string>();
  for (const g of store.list('Gateway').values()) {
    if ((g.spec as { gatewayClassName?: unknown } | undefined)?.gatewayClassName === WAYPOINT_CLASS) out.add(`${g.metadata.namespace ?? ''}/${g.metadata.name}`);
  }
  return out;
}

/**
 * Whether a raw parentRef points at Rondo: any `kind: Service` (even with a wrong group, so
 * that mistake is reported), or a Gateway of class rondo-waypoint.
 */
export function isOurParentRef(ref: unknown, routeNamespace: string, waypoints: ReadonlySet<string>): boolean {
  if (ref === null || typeof ref !== 'object') return false;
  const r = ref as { group?: unknown; kind?: unknown; namespace?: unknown; name?: unknown };
  if (r.kind === 'Service') return true;
  if ((r.kind ?? 'Gateway') !== 'Gateway' || (r.group ?? GATEWAY_GROUP) !== GATEWAY_GROUP || typeof r.name !== 'string') return false;
  return waypoints.has(`${typeof r.namespace === 'string' ? r.namespace : routeNamespace}/${r.name}`);
}

/** The raw parentRefs of a route (whatever the source delivered). */
export function rawParentRefs(obj: KubeObject): unknown[] {
  const refs = (obj.spec as { parentRefs?: unknown } | undefined)?.parentRefs;
  return Array.isArray(refs) ? refs : [];
}

/** Whether a route has at least one parentRef that points at Rondo. */
export function isOurRoute(obj: KubeObject, waypoints: ReadonlySet<string>): boolean {
  const ns = obj.metadata.namespace ?? '';
  return rawParentRefs(obj).some((r) => isOurParentRef(r, ns, waypoints));
}

function specError(err: z.ZodError): { error: string; statusReason?: string } {
  const reason = unsupportedReason(err);
  return { error: `spec: ${describeZodError(err)}`, ...(reason !== undefined ? { statusReason: reason } : {}) };
}

/** One L7 object -> its wire resource (Gateways of other classes are skipped). */
export function toL7(obj: KubeObject): PolicyResult<L7Resource> | { skip: string } {
  const namespace = obj.metadata.namespace;
  if (namespace === undefined) return { error: 'metadata.namespace: missing' };
  const name = obj.metadata.name;
  const spec = obj.spec;
  if (spec === null || typeof spec !== 'object' || Array.isArray(spec)) return { error: 'spec: must be an object' };
  switch (obj.kind) {
    case 'Gateway':
      if ((spec as { gatewayClassName?: unknown }).gatewayClassName !== WAYPOINT_CLASS) return { skip: 'not a rondo-waypoint Gateway' };
      return { value: Object.freeze({ kind: 'Gateway', namespace, name, spec: spec as Record<string, unknown> }) };
    case 'TrafficPolicy': {
      const s = TrafficPolicySpec.safeParse(spec);
      if (!s.success) return specError(s.error);
      return { value: Object.freeze({ kind: 'TrafficPolicy', namespace, name, spec: s.data }) };
    }
    case 'HTTPRoute':
    case 'GRPCRoute': {
      const ts = (obj.metadata as { creationTimestamp?: unknown }).creationTimestamp;
      if (ts !== undefined && !(typeof ts === 'string' && RFC3339.safeParse(ts).success)) {
        return { error: 'metadata.creationTimestamp: must be an RFC 3339 time such as 2025-01-31T12:00:00Z' };
      }
      const meta = { namespace, name, ...(typeof ts === 'string' ? { creationTimestamp: ts } : {}) };
      if (obj.kind === 'HTTPRoute') {
        const s = HTTPRouteSpec.safeParse(spec);
        return s.success ? { value: Object.freeze({ kind: 'HTTPRoute', ...meta, spec: s.data }) } : specError(s.error);
      }
      const s = GRPCRouteSpec.safeParse(spec);
      return s.success ? { value: Object.freeze({ kind: 'GRPCRoute', ...meta, spec: s.data }) } : specError(s.error);
    }
    default:
      return { error: `kind ${obj.kind}: not an L7 kind` };
  }
}
