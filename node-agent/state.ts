/**
 * The node agent's read-only view of one config version: indexes built once per
 * ProxyConfig (workloads by IP and uid, services by VIP and key, local workloads) and the
 * compiled authorization policies, so the per-connection path does map lookups only.
 */
import type { ProxyConfig } from '../common/proxy-config.ts';
import { formatSpiffeId } from '../common/spiffe.ts';
import { AuthzPolicies } from '../common/authz.ts';
import { keyOf } from '../common/resources.ts';
import type {
  AuthorizationPolicy,
  PeerAuthentication,
  Service,
  WaypointRef,
  Workload,
} from '../common/wire.ts';

/** A config inconsistency found while indexing; the rest of the config still applies. */
export interface StateProblem {
  type: string;
  key: string;
  reason: string;
}

/** Waypoint HBONE target: the waypoint pod to dial and the identity it must present. */
export interface WaypointAddress {
  ip: string;
  identity: string;
}

/** The node agent's indexed, read-only view of one config version. */
export class AgentState {
  /** The config these indexes were built from. */
  readonly config: ProxyConfig;
  /** This agent's node name. */
  readonly node: string;
  /** Inconsistencies (IP claimed twice, …) found while indexing, for logs and /debug. */
  readonly problems: readonly StateProblem[];
  /** This version's authorization policies and PeerAuthentications, compiled. */
  readonly authz: AuthzPolicies;

  readonly #byIp: Map<string, Workload>;
  readonly #byUid: ReadonlyMap<string, Workload>;
  readonly #byVip: Map<string, Service>;
  readonly #services: ReadonlyMap<string, Service>;
  readonly #local: Workload[];
  // Per SPIFFE identity, one workload per (Deployment-level) workload name: what a verified
  // peer certificate can stand for when its labels are built.
  readonly #byIdentity = new Map<string, Map<string, Workload>>();
  readonly #waypoints = new Map<string, WaypointAddress | null>();
  readonly #waypointUids = new Map<string, ReadonlySet<string>>();
  readonly #servingWaypoints = new Map<string, ReadonlySet<string>>();

  private constructor(cfg: ProxyConfig, node: string) {
    this.config = cfg;
    this.node = node;
    const problems: StateProblem[] = [];
    this.#byUid = cfg.workloads;
    this.#services = cfg.services;
    this.#byIp = new Map();
    this.#local = [];
    for (const w of cfg.workloads.values()) {
      if (w.node === node) this.#local.push(w);
      let names = this.#byIdentity.get(w.identity);
      if (names === undefined) { names = new Map(); this.#byIdentity.set(w.identity, names); }
      if (!names.has(w.workloadName)) names.set(w.workloadName, w);
      for (const ip of w.ips) {
        const prev = this.#byIp.get(ip);
        if (prev !== undefined) {
          // Two pods claiming one IP usually means a stale pod not yet removed. Keep the
          // first seen so the answer does not flap with map order within one version.
          problems.push({
            type: 'workloads',
            key: w.uid,
            reason: `IP ${ip} is also claimed by pod ${keyOf(prev)} (uid ${prev.uid}); is a deleted pod still listed?`,
          });
          continue;
        }
        this.#byIp.set(ip, w);
      }
    }
    this.#byVip = new Map();
    for (const [key, s] of cfg.services) {
      for (const vip of s.vips) {
        const prev = this.#byVip.get(vip);
        if (prev !== undefined) {
          problems.push({ type: 'services', key, reason: `VIP ${vip} is also used by service ${keyOf(prev)}` });
          continue;
        }
        this.#byVip.set(vip, s);
      }
    }
    this.authz = AuthzPolicies.compile({
      policies: cfg.authorizationPolicies.values(),
      peerAuthentications: cfg.peerAuthentications.values(),
      rootNamespace: cfg.mesh.rootNamespace,
    });
    this.problems = problems;
  }

  /** Builds the indexes for one config version (O(pods + services + policies)). */
  static build(cfg: ProxyConfig, node: string): AgentState {
    return new AgentState(cfg, node);
  }

  /** The pod that owns `ip`, enrolled or not. */
  workloadByIp(ip: string): Workload | undefined {
    return this.#byIp.get(ip);
  }

  /** The pod with this uid. */
  workloadByUid(uid: string): Workload | undefined {
    return this.#byUid.get(uid);
  }

  /**
   * The workloads running under SPIFFE identity `identity`, one per workload name (a
   * representative pod of each). Several when Deployments share a service account.
   */
  workloadsByIdentity(identity: string): ReadonlyMap<string, Workload> | undefined {
    return this.#byIdentity.get(identity);
  }

  /** The service whose cluster IP is `ip`. */
  serviceByVip(ip: string): Service | undefined {
    return this.#byVip.get(ip);
  }

  /** The service `<namespace>/<name>`. */
  serviceByKey(key: string): Service | undefined {
    return this.#services.get(key);
  }

  /** Pods scheduled on this agent's node (enrolled or not). */
  localWorkloads(): Workload[] {
    return this.#local;
  }

  /** IPs of this node's enrolled pods: what capture must put in the ipset. */
  enrolledLocalIps(): string[] {
    const out: string[] = [];
    for (const w of this.#local) if (w.enrolled) out.push(...w.ips);
    return out;
  }

  /** True when the pod runs on this agent's node. */
  isLocal(w: Workload): boolean {
    return w.node === this.node;
  }

  /** Authorization policies of one namespace (any selector), in name order. */
  policiesInNamespace(ns: string): readonly AuthorizationPolicy[] {
    return this.authz.policiesInNamespace(ns);
  }

  /** PeerAuthentications of one namespace, in name order. */
  peerAuthsInNamespace(ns: string): readonly PeerAuthentication[] {
    return this.authz.peerAuthsInNamespace(ns);
  }

  /**
   * Where to send HBONE for a waypoint: a ready endpoint of the waypoint's Service
   * (`<namespace>/<name>`), else a pod of the waypoint's Deployment (workloadName = name).
   * Dialing a pod IP rather than the VIP keeps the agent's own connection away from the
   * node's service NAT. Memoised per state, so the answer is stable within a version.
   */
  waypointAddress(ref: WaypointRef): WaypointAddress | undefined {
    const key = keyOf(ref);
    const cached = this.#waypoints.get(key);
    if (cached !== undefined) return cached ?? undefined;
    let found: WaypointAddress | null = null;
    const pods = this.#waypointPods(ref);
    const svc = this.#services.get(key);
    if (svc !== undefined) {
      for (const ep of svc.endpoints) {
        if (!ep.ready) continue;
        const w = this.#byUid.get(ep.workloadUid);
        found = {
          ip: ep.ip,
          identity: w?.identity ?? this.#defaultWaypointIdentity(ref),
        };
        break;
      }
    }
    if (found === null) {
      for (const uid of pods) {
        const w = this.#byUid.get(uid);
        const ip = w?.ips[0];
        if (w !== undefined && ip !== undefined) {
          found = { ip, identity: w.identity };
          break;
        }
      }
    }
    this.#waypoints.set(key, found);
    return found ?? undefined;
  }

  /** True when `w` is one of the pods implementing this waypoint (its traffic must not loop back). */
  isWaypointPod(w: Workload, ref: WaypointRef): boolean {
    return this.#waypointPods(ref).has(w.uid);
  }

  #waypointPods(ref: WaypointRef): ReadonlySet<string> {
    const key = keyOf(ref);
    let set = this.#waypointUids.get(key);
    if (set !== undefined) return set;
    const uids = new Set<string>();
    const svc = this.#services.get(key);
    if (svc !== undefined) for (const ep of svc.endpoints) uids.add(ep.workloadUid);
    // Fallback for a waypoint whose Service is not pushed yet: pods of its Deployment.
    // Linear scan, but only once per waypoint per config version.
    if (uids.size === 0) {
      for (const w of this.#byUid.values()) {
        if (w.namespace === ref.namespace && w.workloadName === ref.name) uids.add(w.uid);
      }
    }
    set = uids;
    this.#waypointUids.set(key, set);
    return set;
  }

  /**
   * True when `peerIdentity` is the identity of a waypoint that serves `w` (its own, or one
   * of a Service that has it as an endpoint). The waypoint authorized the request with the
   * original caller's verified identity and every L4 and L7 rule, so the destination agent
   * does not judge the waypoint's own identity against policies written for callers.
   */
  isServingWaypoint(w: Workload, peerIdentity: string | undefined): boolean {
    if (peerIdentity === undefined) return false;
    let ids = this.#servingWaypoints.get(w.uid);
    if (ids === undefined) {
      const found = new Set<string>();
      if (w.waypoint !== undefined) found.add(this.#defaultWaypointIdentity(w.waypoint));
      for (const s of this.#services.values()) {
        if (s.waypoint !== undefined && s.endpoints.some((e) => e.workloadUid === w.uid)) found.add(this.#defaultWaypointIdentity(s.waypoint));
      }
      this.#servingWaypoints.set(w.uid, (ids = found));
    }
    return ids.has(peerIdentity);
  }

  #defaultWaypointIdentity(ref: WaypointRef): string {
    // The controller runs each waypoint under a ServiceAccount named after it.
    return formatSpiffeId(this.config.mesh.trustDomain, ref.namespace, ref.name);
  }
}

