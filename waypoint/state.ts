/**
 * The waypoint's read-only view of one config version: services by VIP and key, workloads
 * by IP and uid, which of them are bound to this waypoint, the compiled route table and the
 * compiled authorization policies. Built once per pushed config; the request path does map
 * lookups and scans of precompiled lists only.
 */
import type { ProxyConfig } from '../common/proxy-config.ts';
import { AuthzPolicies } from '../common/authz.ts';
import { keyOf } from '../common/resources.ts';
import { endpointKey } from '../common/endpoint-picker.ts';
import type { Service, ServicePort, WaypointRef, Workload } from '../common/wire.ts';
import { compileRouteTable } from './route-table.ts';
import type { RouteTable } from './route-table.ts';

/** A ready endpoint of a service port, with the pod behind it when the config knows it. */
export interface EndpointTarget {
  ip: string;
  port: number;
  /** `ip:port`, the picker's key (built once per config version, not per request). */
  key: string;
  workload: Workload | undefined;
}

/** What a CONNECT's `:authority` names, resolved: a service port or a pod of a bound workload. */
export type TunnelTarget =
  | { kind: 'service'; service: Service; port: ServicePort }
  | { kind: 'workload'; workload: Workload; service: Service | undefined; port: number }
  | { kind: 'not-served'; reason: string };

/** The waypoint's indexed view of one config version. */
export class WaypointState {
  readonly config: ProxyConfig;
  /** This waypoint (the Gateway it serves). */
  readonly self: WaypointRef;
  readonly routes: RouteTable;
  readonly authz: AuthzPolicies;
  readonly #byVip = new Map<string, Service>();
  readonly #byIp = new Map<string, Workload>();
  readonly #endpoints = new Map<string, { list: EndpointTarget[]; keys: string[] }>();

  private constructor(cfg: ProxyConfig, self: WaypointRef) {
    this.config = cfg;
    this.self = self;
    for (const s of cfg.services.values()) for (const vip of s.vips) if (!this.#byVip.has(vip)) this.#byVip.set(vip, s);
    for (const w of cfg.workloads.values()) for (const ip of w.ips) if (!this.#byIp.has(ip)) this.#byIp.set(ip, w);
    this.routes = compileRouteTable(cfg);
    this.authz = AuthzPolicies.compile({
      policies: cfg.authorizationPolicies.values(),
      peerAuthentications: cfg.peerAuthentications.values(),
      rootNamespace: cfg.mesh.rootNamespace,
    });
  }

  /** Indexes one config version for the waypoint `self`. */
  static build(cfg: ProxyConfig, self: WaypointRef): WaypointState {
    return new WaypointState(cfg, self);
  }

  #bound(ref: WaypointRef | undefined): boolean {
    return ref !== undefined && ref.namespace === this.self.namespace && ref.name === this.self.name;
  }

  /** The service or workload a CONNECT to `ip:port` is for, if this waypoint serves it. */
  resolve(ip: string, port: number): TunnelTarget {
    const svc = this.#byVip.get(ip);
    if (svc !== undefined) {
      if (!this.#bound(svc.waypoint)) return { kind: 'not-served', reason: `service ${keyOf(svc)} is not bound to waypoint ${keyOf(this.self)}` };
      const sp = svc.ports.find((p) => p.port === port);
      if (sp === undefined) return { kind: 'not-served', reason: `service ${keyOf(svc)} has no port ${port}` };
      return { kind: 'service', service: svc, port: sp };
    }
    const w = this.#byIp.get(ip);
    if (w !== undefined && this.#bound(w.waypoint)) return { kind: 'workload', workload: w, service: this.owningService(w), port };
    return { kind: 'not-served', reason: `${ip}:${port} is neither a service VIP nor a pod bound to waypoint ${keyOf(this.self)}` };
  }

  /** A service by `<namespace>/<name>`. */
  service(key: string): Service | undefined {
    return this.config.services.get(key);
  }

  /** A workload by pod uid, else by IP. */
  workload(uid: string, ip: string): Workload | undefined {
    return this.config.workloads.get(uid) ?? this.#byIp.get(ip);
  }

  /** A workload by IP. */
  workloadByIp(ip: string): Workload | undefined {
    return this.#byIp.get(ip);
  }

  /** Ready endpoints of a service port (`targetPort` resolved), cached for this version. */
  endpoints(service: Service, port: number): readonly EndpointTarget[] {
    return this.#endpointsOf(service, port).list;
  }

  /** The picker keys of endpoints(service, port), index for index. */
  endpointKeys(service: Service, port: number): readonly string[] {
    return this.#endpointsOf(service, port).keys;
  }

  #endpointsOf(service: Service, port: number): { list: EndpointTarget[]; keys: string[] } {
    const key = `${keyOf(service)}:${port}`;
    let e = this.#endpoints.get(key);
    if (e !== undefined) return e;
    const sp = service.ports.find((p) => p.port === port);
    const list = sp === undefined ? [] : service.endpoints.filter((x) => x.ready).map((x) => ({ ip: x.ip, port: sp.targetPort, key: endpointKey(x.ip, sp.targetPort), workload: this.workload(x.workloadUid, x.ip) }));
    e = { list, keys: list.map((x) => x.key) };
    this.#endpoints.set(key, e);
    return e;
  }

  /** The first service (key order) that lists the pod as an endpoint. */
  owningService(w: Workload): Service | undefined {
    for (const s of this.config.services.values()) if (s.endpoints.some((e) => e.workloadUid === w.uid)) return s;
    return undefined;
  }
}
