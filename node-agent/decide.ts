/**
 * The outbound decision: a pure function of the agent's state from (source pod, original
 * destination) to where a captured connection goes, and the source an inbound tunnel is
 * labelled with. No sockets here; the data path acts on the returned value.
 *
 * Choices made (documented in docs/architecture.md):
 * - VIP with a port the Service does not declare: passthrough to the VIP (as Istio does), so
 *   the node's service NAT handles it exactly as without the mesh.
 * - A workload-level waypoint on a pod addressed by its IP: sent to the waypoint with the
 *   first Service that selects the pod (or a pod-only stand-in when none does), because
 *   bypassing a waypoint would bypass its L7 policy.
 * - A service endpoint whose pod is not enrolled (or unknown): plain passthrough to
 *   `ip:targetPort`; the mesh cannot do mTLS to it.
 */
import type { Service, Workload } from '../common/wire.ts';
import type { ErrorCode } from '../common/errors.ts';
import { formatSpiffeId, tryParseSpiffeId } from '../common/spiffe.ts';
import { UNKNOWN } from '../common/istio-labels.ts';
import { parseBaggage } from '../common/hbone-headers.ts';
import type { LabelWorkload } from '../common/istio-labels.ts';
import { PORTS, type HbonePort } from '../common/ports.ts';
import { endpointKey } from '../common/endpoint-picker.ts';
import type { EndpointPicker } from '../common/endpoint-picker.ts';
import type { AgentState } from './state.ts';
import { keyOf } from '../common/resources.ts';

/** Where a captured outbound connection goes. */
export type OutboundDecision =
  | {
      kind: 'hbone';
      connectTo: { ip: string; port: HbonePort };
      /** `ip:port` of the final pod target. */
      authority: string;
      expectedIdentity: string;
      source: Workload;
      destination: Workload;
      service?: Service;
    }
  | {
      kind: 'waypoint';
      connectTo: { ip: string; port: HbonePort };
      /** `vip:port` (or `podIP:port` for a pod addressed directly). */
      authority: string;
      expectedIdentity: string;
      source: Workload;
      service: Service;
    }
  | { kind: 'local'; ip: string; port: number; source: Workload; destination: Workload; service?: Service }
  | { kind: 'passthrough'; ip: string; port: number; source?: Workload }
  | { kind: 'refuse'; code: ErrorCode; reason: string; source?: Workload };

/** Decides where a connection captured from `src` to original destination `dst` goes. */
export function decideOutbound(
  state: AgentState,
  src: { ip: string },
  dst: { ip: string; port: number },
  lb: EndpointPicker,
): OutboundDecision {
  const source = state.workloadByIp(src.ip);
  if (source === undefined || !source.enrolled || !state.isLocal(source)) {
    // Only this node's enrolled pods are captured; anything else reaching 15001 is a
    // misrouted or spoofed connection and must not get a mesh identity.
    return source === undefined
      ? { kind: 'refuse', code: 'RONDO_E_SOURCE_NOT_ENROLLED', reason: `source not enrolled: no pod on node ${state.node} has IP ${src.ip}` }
      : { kind: 'refuse', code: 'RONDO_E_SOURCE_NOT_ENROLLED', reason: `source not enrolled: pod ${keyOf(source)} is ${source.enrolled ? `on node ${source.node}, not ${state.node}` : 'not enrolled in the mesh'}`, source };
  }

  const service = state.serviceByVip(dst.ip);
  if (service !== undefined) return toService(state, source, service, dst, lb);

  const destination = state.workloadByIp(dst.ip);
  if (destination === undefined || !destination.enrolled) {
    return { kind: 'passthrough', ip: dst.ip, port: dst.port, source };
  }
  const wp = destination.waypoint;
  if (wp !== undefined && !state.isWaypointPod(source, wp)) {
    const via = owningService(state, destination) ?? podStandIn(destination);
    return toWaypoint(state, source, via, wp, authorityOf(dst.ip, dst.port), lb);
  }
  return toPod(state, source, destination, dst.ip, dst.port, undefined);
}

function toService(
  state: AgentState,
  source: Workload,
  service: Service,
  dst: { ip: string; port: number },
  lb: EndpointPicker,
): OutboundDecision {
  const sp = service.ports.find((p) => p.port === dst.port);
  if (sp === undefined) return { kind: 'passthrough', ip: dst.ip, port: dst.port, source };
  if (service.waypoint !== undefined && !state.isWaypointPod(source, service.waypoint)) {
    return toWaypoint(state, source, service, service.waypoint, authorityOf(dst.ip, dst.port), lb);
  }
  const ready = service.endpoints.filter((e) => e.ready);
  const keys = ready.map((e) => endpointKey(e.ip, sp.targetPort));
  const i = lb.pick(servicePool(service, sp.port), keys);
  const ep = ready[i];
  if (ep === undefined) {
    return {
      kind: 'refuse',
      code: 'RONDO_E_NO_READY_ENDPOINTS',
      reason: `service ${keyOf(service)} port ${dst.port} has no ready endpoints (${service.endpoints.length} total): are its pods running and passing readiness?`,
      source,
    };
  }
  const destination = state.workloadByUid(ep.workloadUid) ?? state.workloadByIp(ep.ip);
  if (destination === undefined || !destination.enrolled) {
    return { kind: 'passthrough', ip: ep.ip, port: sp.targetPort, source };
  }
  return toPod(state, source, destination, ep.ip, sp.targetPort, service);
}

function toPod(
  state: AgentState,
  source: Workload,
  destination: Workload,
  ip: string,
  port: number,
  service: Service | undefined,
): OutboundDecision {
  if (state.isLocal(destination)) {
    return service === undefined
      ? { kind: 'local', ip, port, source, destination }
      : { kind: 'local', ip, port, source, destination, service };
  }
  const base = {
    kind: 'hbone' as const,
    connectTo: { ip, port: PORTS.hbone } as const,
    authority: authorityOf(ip, port),
    expectedIdentity: destination.identity,
    source,
    destination,
  };
  return service === undefined ? base : { ...base, service };
}

function toWaypoint(
  state: AgentState,
  source: Workload,
  service: Service,
  ref: { namespace: string; name: string },
  authority: string,
  lb: EndpointPicker,
): OutboundDecision {
  const addr = pickWaypointReplica(state, ref, lb) ?? state.waypointAddress(ref);
  if (addr === undefined) {
    // Fail closed: skipping the waypoint would skip the L7 policy it enforces.
    return {
      kind: 'refuse',
      code: 'RONDO_E_WAYPOINT_UNAVAILABLE',
      reason: `waypoint ${keyOf(ref)} for ${keyOf(service)} has no ready pod: is the waypoint deployed and ready?`,
      source,
    };
  }
  return {
    kind: 'waypoint',
    connectTo: { ip: addr.ip, port: PORTS.hbone },
    authority,
    expectedIdentity: addr.identity,
    source,
    service,
  };
}

/**
 * Spreads sources over a waypoint's ready replicas with the same picker as services;
 * undefined when the waypoint has no Service with ready endpoints (state decides then).
 */
function pickWaypointReplica(
  state: AgentState,
  ref: { namespace: string; name: string },
  lb: EndpointPicker,
): { ip: string; identity: string } | undefined {
  const svc = state.serviceByKey(keyOf(ref));
  if (svc === undefined) return undefined;
  const ready = svc.endpoints.filter((e) => e.ready);
  if (ready.length < 2) return undefined;
  const ep = ready[lb.pick(waypointPool(ref), ready.map((e) => endpointKey(e.ip, PORTS.hbone)))];
  if (ep === undefined) return undefined;
  const w = state.workloadByUid(ep.workloadUid);
  return { ip: ep.ip, identity: w?.identity ?? formatSpiffeId(state.config.mesh.trustDomain, ref.namespace, ref.name) };
}

/** The picker pool of a service port. */
function servicePool(service: { namespace: string; name: string }, port: number): string {
  return `${keyOf(service)}:${port}`;
}

/** The picker pool of a waypoint's replicas (its Service of the same name). */
function waypointPool(ref: { namespace: string; name: string }): string {
  return `waypoint:${keyOf(ref)}`;
}

/**
 * Every picker pool `state` can choose in (each service port, and each Service as a
 * waypoint's replicas), for EndpointPicker.retainPools on a config change.
 */
export function pickerPools(state: AgentState): Set<string> {
  const out = new Set<string>();
  for (const s of state.config.services.values()) {
    out.add(waypointPool(s));
    for (const p of s.ports) out.add(servicePool(s, p.port));
  }
  return out;
}

/**
 * The key to pass to EndpointPicker.acquire/release for a decision's connection (the
 * endpoint the picker chose from), or undefined for refusals.
 */
export function pickerKey(d: OutboundDecision): string | undefined {
  switch (d.kind) {
    case 'hbone':
      return d.authority;
    case 'waypoint':
      return endpointKey(d.connectTo.ip, d.connectTo.port);
    case 'local':
    case 'passthrough':
      return endpointKey(d.ip, d.port);
    case 'refuse':
      return undefined;
  }
}

/** First Service (by key order) that lists the pod as an endpoint. */
function owningService(state: AgentState, w: Workload): Service | undefined {
  // Rare path (workload waypoints addressed by pod IP): a scan is fine here.
  for (const s of state.config.services.values()) {
    if (s.endpoints.some((e) => e.workloadUid === w.uid)) return s;
  }
  return undefined;
}

function podStandIn(w: Workload): Service {
  const ip = w.ips[0] ?? '';
  return {
    namespace: w.namespace,
    name: w.name,
    hostname: `${w.name}.${w.namespace}.pod`,
    vips: [],
    ports: [],
    endpoints: [{ workloadUid: w.uid, ip, ready: true }],
    ...(w.waypoint !== undefined ? { waypoint: w.waypoint } : {}),
  };
}

/** `ip:port`, with brackets for IPv6. */
export function authorityOf(ip: string, port: number): string {
  return endpointKey(ip, port);
}

/**
 * The source workload a destination agent labels an inbound HBONE tunnel with, from what
 * the control plane knows about the peer's verified identity. `baggage` is the header the
 * peer wrote: a peer holding a valid mesh certificate can write
 * anything there, so it only chooses among the workloads that really run under that
 * identity (Deployments sharing a service account) and is ignored otherwise. Namespace
 * and workload name therefore take values from the pushed config or the certificate, and
 * forged baggage can neither lie nor make new label sets. Undefined: no usable identity.
 */
export function inboundSource(
  state: AgentState,
  peerIdentity: string | undefined,
  baggage: string | undefined,
): LabelWorkload | undefined {
  if (peerIdentity === undefined) return undefined;
  const known = state.workloadsByIdentity(peerIdentity);
  if (known !== undefined) {
    if (known.size === 1) for (const w of known.values()) return w;
    // Parsed only here, where it can matter: other tunnels never read the header.
    const claimed = parseBaggage(baggage);
    const picked = claimed.workloadName === undefined ? undefined : known.get(claimed.workloadName);
    if (picked !== undefined && (claimed.namespace === undefined || claimed.namespace === picked.namespace)) return picked;
  }
  // No workload (a pod the config does not list yet) or no agreeing claim: the namespace is
  // still certain, it is part of the identity the mesh CA signed.
  const id = tryParseSpiffeId(peerIdentity);
  return id === undefined ? undefined : { namespace: id.namespace, workloadName: UNKNOWN, identity: peerIdentity };
}
