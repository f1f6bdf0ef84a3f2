/**
 * What the waypoint does with one request: a pure function of the config version's state
 * and the request, returning either an answer the waypoint gives itself (403, 404, a
 * redirect, 500/503) or where to forward it and how to change it. No sockets here; the
 * proxy (proxy.ts) acts on the result, picks the endpoint and applies the timeouts.
 *
 * Order: L7 authorization first (a refused request costs nothing more and never reaches a
 * route's side effects such as a mirror), then the route match, then the rule's filters.
 *
 * Authorization target: for a request to a service, the policies that select the service's
 * pods (the labels of its first ready endpoint: a Service selects pods by labels, so its pods
 * share them); for a pod addressed directly (a workload-bound waypoint), that pod. The source
 * is the verified peer identity of the HBONE connection, never a header.
 */
import type { AuthzResult, AuthzTarget } from '../common/authz.ts';
import type { ErrorCode } from '../common/errors.ts';
import { keyOf } from '../common/resources.ts';
import type { Service } from '../common/wire.ts';
import type { RouteBackend, RouteFilter, RouteMatch, RouteRetry, RouteTimeouts, RequestView } from './route-table.ts';
import { pickBackend } from './route-table.ts';
import type { WaypointState, TunnelTarget } from './state.ts';
import { applyHeaderFilter, mirrorSelected, modifyPath, redirectLocation, splitHost, splitTarget } from './filters.ts';
import type { HeaderMap } from './filters.ts';

/** gRPC status codes the waypoint answers with itself. */
export const GRPC_STATUS = { OK: 0, UNKNOWN: 2, DEADLINE_EXCEEDED: 4, PERMISSION_DENIED: 7, RESOURCE_EXHAUSTED: 8, UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14 } as const;

/** One request as the dispatcher reads it. */
export interface DispatchRequest {
  protocol: 'http' | 'grpc';
  method: string;
  /** Request target (path and query) as received. */
  target: string;
  /** Host header or :authority. */
  authority: string;
  /**
   * Request headers (lower-case names), already a copy the caller owns (forwardableHeaders):
   * the forward decision changes and returns this object instead of copying it again.
   */
  headers: HeaderMap;
  scheme: 'http' | 'https';
}

/** Who sent it: from the verified HBONE peer certificate. */
export interface Caller {
  identity: string | undefined;
  namespace: string | undefined;
  ip: string;
}

/** An answer the waypoint gives itself. */
export interface LocalReply {
  kind: 'reply';
  status: number;
  code: ErrorCode | undefined;
  reason: string;
  grpcStatus?: number;
  headers?: Record<string, string>;
  /** Policy that refused, for the 403 body and the access log. */
  policy?: string;
}

/** A mirror copy to send (fire and forget). */
export interface MirrorTarget { service: Service; port: number }

/** Forward to a backend service port. */
export interface Forward {
  kind: 'forward';
  service: Service;
  port: number;
  /** Path and query to send. */
  target: string;
  /** Host header / :authority to send. */
  authority: string;
  /** Request headers to send (a copy; the route's and the backend's filters applied). */
  headers: HeaderMap;
  /** Response header filters to apply, rule first then backend. */
  responseFilters: readonly RouteFilter[];
  mirrors: readonly MirrorTarget[];
  timeouts: RouteTimeouts;
  retry: RouteRetry | undefined;
  route: RouteMatch['route'] | undefined;
  /** The authorization verdict (AUDIT matches are logged). */
  authz: AuthzResult;
}

export type Dispatch = LocalReply | Forward;

const NO_TIMEOUTS: RouteTimeouts = Object.freeze({ requestMs: undefined, backendRequestMs: undefined });

/** The authorization target for a tunnel target (see the module comment). */
export function authzTargetOf(state: WaypointState, t: Exclude<TunnelTarget, { kind: 'not-served' }>): AuthzTarget {
  if (t.kind === 'workload') return { namespace: t.workload.namespace, name: t.workload.name, labels: t.workload.labels };
  const first = t.service.endpoints.find((e) => e.ready) ?? t.service.endpoints[0];
  const w = first === undefined ? undefined : state.workload(first.workloadUid, first.ip);
  return { namespace: t.service.namespace, name: w?.name ?? t.service.name, labels: w?.labels ?? {} };
}

/** Decides one request. `random` returns [0, 1) (weighted backends, mirror share). */
export function dispatch(state: WaypointState, t: Exclude<TunnelTarget, { kind: 'not-served' }>, req: DispatchRequest, caller: Caller, random: () => number): Dispatch {
  const port = t.kind === 'service' ? t.port.port : t.port;
  const { path, query } = splitTarget(req.target);
  const authz = state.authz.authorize(authzTargetOf(state, t), {
    ...(caller.identity !== undefined ? { sourceIdentity: caller.identity } : {}),
    sourceIp: caller.ip,
    port: t.kind === 'service' ? t.port.targetPort : t.port,
    http: { method: req.method, path, host: req.authority },
  });
  if (!authz.allowed) {
    return {
      kind: 'reply', status: 403, code: authz.code, reason: authz.reason, grpcStatus: GRPC_STATUS.PERMISSION_DENIED,
      ...(authz.policy !== undefined ? { policy: authz.policy } : {}),
    };
  }
  const service = t.service;
  const routes = service === undefined ? undefined : state.routes.forService(keyOf(service));
  const view: RequestView = { port, method: req.method, path, authority: req.authority, header: (n) => headerValue(req.headers, n) };
  const m = routes?.match(view, caller.namespace) ?? { matched: false as const, reason: 'no-routes' as const };
  if (!m.matched && m.reason === 'no-match') {
    return { kind: 'reply', status: 404, code: 'RONDO_E_NO_ROUTE', reason: `no route rule of ${keyOf(service!)} matches ${req.method} ${path} on port ${port}`, grpcStatus: GRPC_STATUS.UNIMPLEMENTED };
  }
  if (!m.matched) {
    // No routes attached: to the service itself (or the pod addressed), as without a waypoint.
    if (t.kind === 'workload') return forwardToPod(t, req, authz);
    return { kind: 'forward', service: t.service, port, target: req.target, authority: req.authority, headers: req.headers, responseFilters: [], mirrors: [], timeouts: NO_TIMEOUTS, retry: undefined, route: undefined, authz };
  }

  const headers = req.headers;
  let outPath = path;
  let authority = req.authority;
  const responseFilters: RouteFilter[] = [];
  const mirrors: MirrorTarget[] = [];
  for (const f of m.filters) {
    switch (f.type) {
      case 'RequestRedirect': {
        const h = splitHost(req.authority);
        const location = redirectLocation({ scheme: req.scheme, host: h.host, port: h.port, path, query }, f.requestRedirect, m.pathPrefix);
        return { kind: 'reply', status: f.requestRedirect.statusCode, code: undefined, reason: `redirect to ${location}`, headers: { location } };
      }
      case 'URLRewrite':
        if (f.urlRewrite.path !== undefined) outPath = modifyPath(path, f.urlRewrite.path, m.pathPrefix);
        if (f.urlRewrite.hostname !== undefined) authority = f.urlRewrite.hostname;
        break;
      case 'RequestHeaderModifier': applyHeaderFilter(headers, f.requestHeaderModifier); break;
      case 'ResponseHeaderModifier': responseFilters.push(f); break;
      case 'RequestMirror': {
        const mt = mirrorOf(state, f.requestMirror.backendRef, m.route.namespace);
        if (mt !== undefined && mirrorSelected(f.requestMirror, random())) mirrors.push(mt);
        break;
      }
    }
  }
  const backend = pickBackend(m.backends, random());
  if (backend === undefined) {
    // Every backend has weight 0, or the rule has none: the spec asks for a 500.
    return { kind: 'reply', status: 500, code: 'RONDO_E_BACKEND_NOT_FOUND', reason: `route ${m.route.namespace}/${m.route.name} rule ${m.rule.index} has no backend with weight above 0`, grpcStatus: GRPC_STATUS.INTERNAL };
  }
  const svc = backendService(state, backend);
  if (typeof svc === 'string') return { kind: 'reply', status: 500, code: 'RONDO_E_BACKEND_NOT_FOUND', reason: svc, grpcStatus: GRPC_STATUS.INTERNAL };
  for (const f of backend.filters) {
    if (f.type === 'RequestHeaderModifier') applyHeaderFilter(headers, f.requestHeaderModifier);
    else if (f.type === 'ResponseHeaderModifier') responseFilters.push(f);
  }
  return {
    kind: 'forward', service: svc.service, port: svc.port, target: outPath + query, authority, headers, responseFilters, mirrors,
    timeouts: m.timeouts, retry: m.retry, route: m.route, authz,
  };
}

function forwardToPod(t: Extract<TunnelTarget, { kind: 'workload' }>, req: DispatchRequest, authz: AuthzResult): Forward {
  const w = t.workload;
  const stand: Service = { namespace: w.namespace, name: w.name, hostname: `${w.name}.${w.namespace}.pod`, vips: [], ports: [{ port: t.port, targetPort: t.port }], endpoints: [{ workloadUid: w.uid, ip: w.ips[0] ?? '', ready: true }] };
  return { kind: 'forward', service: stand, port: t.port, target: req.target, authority: req.authority, headers: req.headers, responseFilters: [], mirrors: [], timeouts: NO_TIMEOUTS, retry: undefined, route: undefined, authz };
}

function backendService(state: WaypointState, b: RouteBackend): { service: Service; port: number } | string {
  const key = `${b.namespace}/${b.name}`;
  const service = state.service(key);
  if (service === undefined) return `backend service ${key} is unknown to this waypoint (does it exist?)`;
  const port = b.port ?? service.ports[0]?.port;
  if (port === undefined || !service.ports.some((p) => p.port === port)) return `backend service ${key} has no port ${port ?? '(none given)'}`;
  return { service, port };
}

// A mirror's backendRef defaults to the route's namespace, like every backendRef.
function mirrorOf(state: WaypointState, ref: { name: string; namespace?: string | undefined; port?: number | undefined }, routeNamespace: string): MirrorTarget | undefined {
  const service = state.service(`${ref.namespace ?? routeNamespace}/${ref.name}`);
  if (service === undefined) return undefined;
  const port = ref.port ?? service.ports[0]?.port;
  return port === undefined ? undefined : { service, port };
}

/** A header's value for matching: repeated values joined with `, ` (RFC 9110 list form). */
export function headerValue(h: HeaderMap, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v.join(', ') : v;
}
