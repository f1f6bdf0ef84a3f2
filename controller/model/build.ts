/**
 * The model: store objects -> a MeshSnapshot (every resource in wire shape, keyed like
 * wire.ts) -> per-proxy views. Pure apart from its caches: each object's conversion is
 * cached by the identity of its inputs (the store keeps references of unchanged objects),
 * so a rebuild after one pod change converts one pod, and unchanged resources keep their
 * references, which makes the push server's diff a reference check.
 */
import type { AuthorizationPolicy, L7Resource, MeshConfig, PeerAuthentication, ProxyIdentity, Service, Workload } from '../../common/wire.ts';
import { formatSpiffeId } from '../../common/spiffe.ts';
import type { KubeObject } from '../sources/types.ts';
import type { StoreReader } from '../store.ts';
import type { ProxyView } from '../push/view.ts';
import { LABELS, labelsOf, type InvalidResource } from './labels.ts';
import { isEnrolled, podToWorkload, type PodResult } from './workloads.ts';
import { serviceToWire, type ServiceResult } from './services.ts';
import { toAuthorizationPolicy, toPeerAuthentication } from './policies.ts';
import { L7_KINDS, ROUTE_KINDS, isOurRoute, toL7, waypointGateways } from './l7.ts';

/** Mesh-wide inputs of the model. */
export interface MeshOptions {
  trustDomain: string;
  /** Namespace whose policies apply mesh-wide (default `rondo-system`). */
  rootNamespace?: string;
  trustBundle: string[];
}

/** Everything the controller knows after one build, in wire shape. */
export interface MeshSnapshot extends ProxyView {
  readonly resources: {
    readonly workloads: ReadonlyMap<string, Workload>;
    readonly services: ReadonlyMap<string, Service>;
    readonly authorizationPolicies: ReadonlyMap<string, AuthorizationPolicy>;
    readonly peerAuthentications: ReadonlyMap<string, PeerAuthentication>;
    readonly l7: ReadonlyMap<string, L7Resource>;
  };
  /** Resources left out, with the reason (sorted by kind/namespace/name). */
  readonly invalid: readonly InvalidResource[];
  /**
   * SPIFFE identities of enrolled pods scheduled on each node: the only certificates that
   * node's agent may obtain. A pod outside the mesh never needs one from its agent, so an
   * agent (or whoever holds its token) cannot take the identity of a plain pod on its node.
   */
  readonly identitiesByNode: ReadonlyMap<string, ReadonlySet<string>>;
  /** Identities of pods scheduled on a node with none of them enrolled (only to explain a refusal). */
  readonly unenrolledIdentitiesByNode: ReadonlyMap<string, ReadonlySet<string>>;
}

interface PodCacheEntry { pod: KubeObject; ns: KubeObject | undefined; out: PodResult; sched: ScheduledIdentity | undefined }
interface SvcCacheEntry { svc: KubeObject; ns: KubeObject | undefined; slices: KubeObject[]; usedIpIndex: boolean; out: ServiceResult }

function sameArray(a: readonly unknown[], b: readonly unknown[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Builds snapshots incrementally from a store. */
export class ModelBuilder {
  #mesh: MeshConfig;
  #pods = new Map<string, PodCacheEntry>();
  #svcs = new Map<string, SvcCacheEntry>();
  #objCache = new WeakMap<KubeObject, { value: unknown } | { error: string; statusReason?: string } | { skip: string }>();
  #prev: MeshSnapshot | undefined;

  constructor(o: MeshOptions) {
    this.#mesh = Object.freeze({ trustDomain: o.trustDomain, trustBundle: [...o.trustBundle], rootNamespace: o.rootNamespace ?? 'rondo-system' });
  }

  /** Replaces the trust bundle pushed to proxies (CA rotation). */
  setTrustBundle(pems: string[]): void {
    this.#mesh = Object.freeze({ ...this.#mesh, trustBundle: [...pems] });
  }

  /** Converts the whole store into a snapshot. */
  build(store: StoreReader): MeshSnapshot {
    const td = this.#mesh.trustDomain;
    const invalid: InvalidResource[] = [];
    const nsOf = (name: string | undefined): KubeObject | undefined => (name === undefined ? undefined : store.get('Namespace', undefined, name));

    // Workloads.
    const workloads = new Map<string, Workload>();
    const identitiesByNode = new Map<string, Set<string>>();
    const unenrolled = new Map<string, Set<string>>();
    const nextPods = new Map<string, PodCacheEntry>();
    for (const [key, pod] of store.list('Pod')) {
      const ns = nsOf(pod.metadata.namespace);
      let e = this.#pods.get(key);
      if (e === undefined || e.pod !== pod || e.ns !== ns) e = { pod, ns, out: podToWorkload(pod, ns, td), sched: scheduledIdentity(pod, ns, td) };
      nextPods.set(key, e);
      const out = e.out;
      if ('workload' in out) workloads.set(out.workload.uid, out.workload);
      else if ('error' in out) invalid.push({ kind: 'Pod', namespace: pod.metadata.namespace, name: pod.metadata.name, reason: out.error });
      const sched = e.sched;
      if (sched !== undefined) {
        const into = sched.enrolled ? identitiesByNode : unenrolled;
        let s = into.get(sched.node);
        if (s === undefined) into.set(sched.node, (s = new Set()));
        s.add(sched.identity);
      }
    }
    this.#pods = nextPods;
    // One enrolled pod of a service account is enough to authorize its identity.
    for (const [node, ids] of unenrolled) for (const id of identitiesByNode.get(node) ?? []) ids.delete(id);
    // Built only if some EndpointSlice lacks targetRefs (rare: Kubernetes sets them).
    let uidByIp: Map<string, string> | undefined;
    const uidOfIp = (ip: string): string | undefined => {
      if (uidByIp === undefined) {
        uidByIp = new Map();
        for (const w of workloads.values()) for (const a of w.ips) uidByIp.set(a, w.uid);
      }
      return uidByIp.get(ip);
    };

    // Services with their EndpointSlices.
    const slicesBySvc = new Map<string, KubeObject[]>();
    for (const s of store.list('EndpointSlice').values()) {
      const svcName = s.metadata.labels?.[LABELS.serviceName];
      if (svcName === undefined) continue;
      const k = `${s.metadata.namespace ?? ''}/${svcName}`;
      let l = slicesBySvc.get(k);
      if (l === undefined) slicesBySvc.set(k, (l = []));
      l.push(s);
    }
    const services = new Map<string, Service>();
    const nextSvcs = new Map<string, SvcCacheEntry>();
    const podsChanged = this.#prev === undefined || !sameMapRefs(this.#prev.resources.workloads, workloads);
    for (const [key, svc] of store.list('Service')) {
      const ns = nsOf(svc.metadata.namespace);
      const slices = slicesBySvc.get(key) ?? [];
      let e = this.#svcs.get(key);
      if (e === undefined || e.svc !== svc || e.ns !== ns || !sameArray(e.slices, slices) || (e.usedIpIndex && podsChanged)) {
        let used = false;
        const lookup = { get: (ip: string): string | undefined => { used = true; return uidOfIp(ip); } };
        const out = serviceToWire(svc, ns, slices, lookup);
        e = { svc, ns, slices, usedIpIndex: used, out };
      }
      nextSvcs.set(key, e);
      if ('service' in e.out) services.set(key, e.out.service);
      else if ('error' in e.out) invalid.push({ kind: 'Service', namespace: svc.metadata.namespace, name: svc.metadata.name, reason: e.out.error });
    }
    this.#svcs = nextSvcs;

    // Policies and L7 resources (cached per object: they depend on nothing else).
    const authorizationPolicies = this.#convertAll(store, 'AuthorizationPolicy', toAuthorizationPolicy, invalid, (v) => `${v.namespace}/${v.name}`);
    const peerAuthentications = this.#convertAll(store, 'PeerAuthentication', toPeerAuthentication, invalid, (v) => `${v.namespace}/${v.name}`);
    const l7 = new Map<string, L7Resource>();
    const waypoints = waypointGateways(store);
    const ours = (o: KubeObject): boolean => isOurRoute(o, waypoints);
    for (const kind of L7_KINDS) {
      const include = ROUTE_KINDS.has(kind) ? ours : undefined;
      for (const [k, v] of this.#convertAll(store, kind, toL7, invalid, (r) => `${r.kind}/${r.namespace}/${r.name}`, include)) l7.set(k, v);
    }

    invalid.sort((a, b) => `${a.kind}/${a.namespace ?? ''}/${a.name}`.localeCompare(`${b.kind}/${b.namespace ?? ''}/${b.name}`));
    const prev = this.#prev;
    const snap: MeshSnapshot = {
      mesh: prev !== undefined && JSON.stringify(prev.mesh) === JSON.stringify(this.#mesh) ? prev.mesh : this.#mesh,
      resources: {
        // Keep the previous Map object when nothing in it changed: the diff then skips the type.
        workloads: prev !== undefined && sameMapRefs(prev.resources.workloads, workloads) ? prev.resources.workloads : workloads,
        services: prev !== undefined && sameMapRefs(prev.resources.services, services) ? prev.resources.services : services,
        authorizationPolicies: prev !== undefined && sameMapRefs(prev.resources.authorizationPolicies, authorizationPolicies) ? prev.resources.authorizationPolicies : authorizationPolicies,
        peerAuthentications: prev !== undefined && sameMapRefs(prev.resources.peerAuthentications, peerAuthentications) ? prev.resources.peerAuthentications : peerAuthentications,
        l7: prev !== undefined && sameMapRefs(prev.resources.l7, l7) ? prev.resources.l7 : l7,
      },
      invalid,
      identitiesByNode,
      unenrolledIdentitiesByNode: unenrolled,
    };
    this.#prev = snap;
    return snap;
  }

  #convertAll<T>(
    store: StoreReader,
    kind: string,
    convert: (o: KubeObject) => { value: T } | { error: string; statusReason?: string } | { skip: string },
    invalid: InvalidResource[],
    keyOf: (v: T) => string,
    include?: (o: KubeObject) => boolean,
  ): Map<string, T> {
    const out = new Map<string, T>();
    for (const obj of store.list(kind).values()) {
      if (include !== undefined && !include(obj)) continue;
      let r = this.#objCache.get(obj) as { value: T } | { error: string; statusReason?: string } | { skip: string } | undefined;
      if (r === undefined) {
        r = convert(obj);
        this.#objCache.set(obj, r);
      }
      if ('value' in r) out.set(keyOf(r.value), r.value);
      else if ('error' in r) invalid.push({ kind, namespace: obj.metadata.namespace, name: obj.metadata.name, reason: r.error, ...(r.statusReason !== undefined ? { statusReason: r.statusReason } : {}) });
    }
    return out;
  }
}

function sameMapRefs<V>(a: ReadonlyMap<string, V>, b: ReadonlyMap<string, V>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of b) if (a.get(k) !== v) return false;
  return true;
}

interface ScheduledIdentity { node: string; identity: string; enrolled: boolean }

/**
 * Node, identity and enrollment of a pod that is scheduled and not finished (it may need a
 * cert before it runs, so any phase but Succeeded/Failed counts). Enrollment is the same
 * rule as the workload's, so an agent is never refused a cert for a pod it captures.
 */
function scheduledIdentity(pod: KubeObject, ns: KubeObject | undefined, td: string): ScheduledIdentity | undefined {
  const spec = pod.spec as { nodeName?: unknown; serviceAccountName?: unknown; serviceAccount?: unknown } | undefined;
  const phase = (pod.status as { phase?: unknown } | undefined)?.phase;
  if (phase === 'Succeeded' || phase === 'Failed') return undefined;
  if (typeof spec?.nodeName !== 'string' || spec.nodeName === '' || pod.metadata.namespace === undefined) return undefined;
  const sa = typeof spec.serviceAccountName === 'string' ? spec.serviceAccountName
    : typeof spec.serviceAccount === 'string' ? spec.serviceAccount : 'default';
  return { node: spec.nodeName, identity: formatSpiffeId(td, pod.metadata.namespace, sa), enrolled: isEnrolled(labelsOf(pod), labelsOf(ns)) };
}

/** Convenience: one full build without caches. */
export function buildSnapshot(store: StoreReader, o: MeshOptions): MeshSnapshot {
  return new ModelBuilder(o).build(store);
}

const viewCache = new WeakMap<MeshSnapshot, Map<string, ProxyView>>();

/**
 * What one proxy needs. A node agent: every workload and service (to resolve any
 * destination) and every L4 policy (simpler than per-node selection, and all agents then
 * share one view and one serialized delta). A waypoint: the services that use it, the
 * workloads behind them or bound to it, the policies and L7 resources of their namespaces.
 */
export function forProxy(snap: MeshSnapshot, proxy: ProxyIdentity): ProxyView {
  const key = proxy.kind === 'node-agent' ? 'node-agent' : `waypoint/${proxy.namespace}/${proxy.name}`;
  let m = viewCache.get(snap);
  if (m === undefined) viewCache.set(snap, (m = new Map<string, ProxyView>()));
  const hit = m.get(key);
  if (hit !== undefined) return hit;
  let view: ProxyView;
  if (proxy.kind === 'node-agent') {
    // The shared empty l7 map lets the diff skip that type by reference.
    view = { mesh: snap.mesh, resources: { ...snap.resources, l7: EMPTY_L7 } };
  } else {
    view = waypointView(snap, proxy.namespace, proxy.name);
  }
  m.set(key, view);
  return view;
}

const EMPTY_L7: ReadonlyMap<string, L7Resource> = new Map();

function waypointView(snap: MeshSnapshot, wpNs: string, wpName: string): ProxyView {
  const uses = (w: { namespace: string; name: string } | undefined): boolean => w !== undefined && w.namespace === wpNs && w.name === wpName;
  const services = new Map<string, Service>();
  const workloads = new Map<string, Workload>();
  const namespaces = new Set<string>([wpNs, snap.mesh.rootNamespace]);
  const addEndpoints = (s: Service): void => {
    for (const ep of s.endpoints) {
      const w = snap.resources.workloads.get(ep.workloadUid);
      if (w !== undefined) workloads.set(w.uid, w);
    }
  };
  for (const [k, s] of snap.resources.services) {
    if (!uses(s.waypoint)) continue;
    services.set(k, s);
    namespaces.add(s.namespace);
    addEndpoints(s);
  }
  for (const w of snap.resources.workloads.values()) if (uses(w.waypoint)) workloads.set(w.uid, w);
  const inNs = <T extends { namespace: string }>(m: ReadonlyMap<string, T>): Map<string, T> => {
    const out = new Map<string, T>();
    for (const [k, v] of m) if (namespaces.has(v.namespace)) out.set(k, v);
    return out;
  };
  // Consumer routes live in their callers' namespaces, not the service's: they come along
  // because they attach to a service of this waypoint.
  const l7 = new Map<string, L7Resource>();
  for (const [k, r] of snap.resources.l7) {
    if (namespaces.has(r.namespace) || serviceParents(r).some((key) => services.has(key))) l7.set(k, r);
  }
  // The waypoint sends to the routes' backends, which need not use it: it needs their endpoints.
  for (const r of l7.values()) {
    for (const key of backendServices(r)) {
      const s = snap.resources.services.get(key);
      if (s !== undefined && !services.has(key)) {
        services.set(key, s);
        addEndpoints(s);
      }
    }
  }
  return {
    mesh: snap.mesh,
    resources: {
      workloads,
      services,
      authorizationPolicies: inNs(snap.resources.authorizationPolicies),
      peerAuthentications: inNs(snap.resources.peerAuthentications),
      l7,
    },
  };
}

/** `<namespace>/<name>` of the Services a route names as parents. */
function serviceParents(r: L7Resource): string[] {
  if (r.kind !== 'HTTPRoute' && r.kind !== 'GRPCRoute') return [];
  return (r.spec.parentRefs ?? []).filter((p) => p.kind === 'Service' && p.group === '').map((p) => `${p.namespace ?? r.namespace}/${p.name}`);
}

/** `<namespace>/<name>` of the Services a route sends to (backends and mirrors, per rule and per backend). */
function backendServices(r: L7Resource): string[] {
  if (r.kind !== 'HTTPRoute' && r.kind !== 'GRPCRoute') return [];
  const out: string[] = [];
  const ref = (b: { namespace?: string | undefined; name: string }): void => { out.push(`${b.namespace ?? r.namespace}/${b.name}`); };
  const mirrors = (filters: readonly { type: string; requestMirror?: { backendRef: { namespace?: string | undefined; name: string } } }[] | undefined): void => {
    for (const f of filters ?? []) if (f.requestMirror !== undefined) ref(f.requestMirror.backendRef);
  };
  for (const rule of r.spec.rules) {
    mirrors(rule.filters);
    for (const b of rule.backendRefs ?? []) {
      ref(b);
      mirrors(b.filters);
    }
  }
  return out;
}
