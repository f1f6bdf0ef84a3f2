/** Services + EndpointSlices -> wire Services (pure): VIPs, ports, ready endpoints, waypoint. */
import { Service, describeZodError } from '../../common/wire.ts';
import type { Endpoint, ServicePort } from '../../common/wire.ts';
import type { KubeObject } from '../sources/types.ts';
import { labelsOf, waypointFrom } from './labels.ts';

/** Result of converting one Service. */
export type ServiceResult = { service: Service } | { skip: string } | { error: string };

interface SvcSpec {
  type?: unknown;
  clusterIP?: unknown;
  clusterIPs?: unknown;
  ports?: unknown;
}
interface SlicePort { name?: unknown; port?: unknown }
interface SliceEndpoint {
  addresses?: unknown;
  conditions?: { ready?: unknown; serving?: unknown; terminating?: unknown };
  targetRef?: { kind?: unknown; uid?: unknown };
}

/** Converts a Service with its EndpointSlices; `uidByIp` fills endpoints without targetRef. */
export function serviceToWire(
  svc: KubeObject,
  ns: KubeObject | undefined,
  slices: readonly KubeObject[],
  uidByIp: { get(ip: string): string | undefined },
): ServiceResult {
  const namespace = svc.metadata.namespace;
  if (namespace === undefined) return { error: 'metadata.namespace: missing' };
  const spec = (svc.spec ?? {}) as SvcSpec;
  if (spec.type === 'ExternalName') return { skip: 'ExternalName service' };
  const vips: string[] = [];
  if (Array.isArray(spec.clusterIPs)) for (const v of spec.clusterIPs) if (typeof v === 'string' && v !== 'None' && v !== '') vips.push(v);
  if (vips.length === 0 && typeof spec.clusterIP === 'string' && spec.clusterIP !== 'None' && spec.clusterIP !== '') vips.push(spec.clusterIP);

  // Named targetPorts resolve through the slices' port list (Kubernetes does the same).
  const slicePorts = new Map<string, number>();
  for (const s of slices) {
    const ports = (s as { ports?: unknown }).ports;
    if (Array.isArray(ports)) for (const p of ports as SlicePort[]) if (typeof p.port === 'number') slicePorts.set(typeof p.name === 'string' ? p.name : '', p.port);
  }
  const ports: ServicePort[] = [];
  if (spec.ports !== undefined && !Array.isArray(spec.ports)) return { error: 'spec.ports: must be a list' };
  for (const [i, raw] of ((spec.ports ?? []) as Record<string, unknown>[]).entries()) {
    const port = raw['port'];
    if (typeof port !== 'number') return { error: `spec.ports.${i}.port: must be a number` };
    const tp = raw['targetPort'];
    const pname = typeof raw['name'] === 'string' ? raw['name'] : undefined;
    let targetPort: number | undefined;
    if (tp === undefined) targetPort = port;
    else if (typeof tp === 'number') targetPort = tp;
    else if (typeof tp === 'string' && /^\d+$/.test(tp)) targetPort = Number(tp);
    else if (typeof tp === 'string') targetPort = slicePorts.get(pname ?? '') ?? undefined;
    if (targetPort === undefined) continue; // named port with no endpoint yet: nothing to reach
    const ap = raw['appProtocol'];
    ports.push({ ...(pname !== undefined ? { name: pname } : {}), port, targetPort, ...(typeof ap === 'string' ? { appProtocol: ap } : {}) });
  }

  const endpoints: Endpoint[] = [];
  const seen = new Set<string>();
  for (const s of slices) {
    const eps = (s as { endpoints?: unknown }).endpoints;
    if (!Array.isArray(eps)) continue;
    for (const ep of eps as SliceEndpoint[]) {
      const ready = ep.conditions?.ready !== false && ep.conditions?.terminating !== true;
      const addrs = Array.isArray(ep.addresses) ? ep.addresses.filter((a): a is string => typeof a === 'string') : [];
      for (const ip of addrs) {
        if (seen.has(ip)) continue;
        const uid = ep.targetRef?.kind === 'Pod' && typeof ep.targetRef.uid === 'string' ? ep.targetRef.uid : uidByIp.get(ip);
        if (uid === undefined) continue; // not a pod we know (yet): the next pod event brings it
        seen.add(ip);
        endpoints.push({ workloadUid: uid, ip, ready });
      }
    }
  }
  endpoints.sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0));
  const waypoint = waypointFrom(labelsOf(svc), labelsOf(ns), namespace);
  const candidate = {
    namespace,
    name: svc.metadata.name,
    hostname: `${svc.metadata.name}.${namespace}.svc.cluster.local`,
    vips,
    ports,
    endpoints,
    ...(waypoint !== undefined ? { waypoint } : {}),
  };
  const r = Service.safeParse(candidate);
  if (!r.success) return { error: describeZodError(r.error) };
  return { service: Object.freeze(r.data) };
}
