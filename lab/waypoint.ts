/**
 * Pure: where a rondo-waypoint Gateway's pod goes in a lab (node, pod IP, netns and veth
 * names, Service VIP) and the objects the lab writes for it, shaped as the Kubernetes
 * reconciler will make them: a Pod owned by the ReplicaSet of a Deployment named after the
 * Gateway (so the controller's workload name is the Gateway's name), ServiceAccount = the
 * Gateway's name (identity `spiffe://<td>/ns/<ns>/sa/<gateway>`), and a Service `<ns>/<gateway>`
 * with the HBONE port, through whose endpoints the node agents find the waypoint.
 */
import { createHash } from 'node:crypto';
import { InvalidInputError } from '../common/errors.ts';
import type { KubeObject } from '../common/kube-object.ts';
import { PORTS } from '../common/ports.ts';
import { cidrSize, intToIp, parseCidr } from './ipam.ts';
import { keyOf } from './plan.ts';
import type { LabPlan, PodPlan, ServicePlan } from './plan.ts';
import { endpointSliceObject, podObject, serviceObject } from './state-writer.ts';
import type { PodPhase } from './state-writer.ts';

/** The GatewayClass whose Gateways the lab runs a waypoint for. */
export const WAYPOINT_CLASS = 'rondo-waypoint';
/** Annotation on the Gateway that pins its waypoint pod to a lab node. */
export const NODE_ANNOTATION = 'lab.rondo.dev/node';
/** Label the Gateway API puts on a Gateway's pods and Services. */
export const GATEWAY_NAME_LABEL = 'gateway.networking.k8s.io/gateway-name';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** Pod names are `<gateway>-<9>-<5>`: 16 characters on top of the Gateway's name, within 63. */
const MAX_GATEWAY_NAME = 47;

/** One waypoint pod of a lab and its Service. */
export interface WaypointPlan {
  namespace: string;
  gateway: string;
  /** uid of the Pod (the EndpointSlice's targetRef). */
  uid: string;
  /** Name of the owning ReplicaSet: `<gateway>-<hash>`, so the workload name is `<gateway>`. */
  replicaSet: string;
  pod: PodPlan;
  service: ServicePlan;
}

/** True when the object is a Gateway of class rondo-waypoint. */
export function isWaypointGateway(o: { kind: string; spec?: unknown }): boolean {
  return o.kind === 'Gateway' && (o.spec as { gatewayClassName?: unknown } | undefined)?.gatewayClassName === WAYPOINT_CLASS;
}

/** `<namespace>/<gateway>` of a waypoint. */
export function waypointKey(w: { namespace: string; gateway: string }): string {
  return `${w.namespace}/${w.gateway}`;
}

function hex(seed: string, n: number): string {
  return createHash('sha256').update(seed).digest('hex').slice(0, n);
}

/**
 * The node for a new waypoint: the Gateway's `lab.rondo.dev/node` annotation when set, else
 * the node running the fewest pods (planned pods and waypoints), the lowest index on a tie.
 */
export function chooseNode(plan: LabPlan, existing: readonly WaypointPlan[], annotations: Record<string, unknown>, what: string): LabPlan['nodes'][number] {
  const pinned = annotations[NODE_ANNOTATION];
  if (pinned !== undefined) {
    const n = plan.nodes.find((x) => x.name === pinned);
    if (n === undefined) throw new InvalidInputError(`${what}: metadata.annotations.${NODE_ANNOTATION} ${JSON.stringify(pinned)} is not a lab node (${plan.nodes.map((x) => x.name).join(', ')})`);
    return n;
  }
  const load = new Map(plan.nodes.map((n) => [n.name, 0]));
  for (const p of [...plan.pods, ...existing.map((w) => w.pod)]) load.set(p.node, (load.get(p.node) ?? 0) + 1);
  let best = plan.nodes[0]!;
  for (const n of plan.nodes) if (load.get(n.name)! < load.get(best.name)!) best = n;
  return best;
}

/** The lowest pod address of the node's /24 (from .2; .1 is the gateway) that no pod or waypoint holds. */
export function freePodIp(plan: LabPlan, existing: readonly WaypointPlan[], node: LabPlan['nodes'][number]): string {
  const used = new Set([...plan.pods, ...existing.map((w) => w.pod)].filter((p) => p.node === node.name).map((p) => p.ip));
  const cidr = parseCidr(node.podCIDR, `node ${node.name} podCIDR`);
  for (let i = 2; i < cidrSize(cidr) - 1; i++) {
    const ip = intToIp(cidr.base + i);
    if (!used.has(ip)) return ip;
  }
  throw new InvalidInputError(`node ${node.name} has no free pod address left in ${node.podCIDR}: delete a waypoint or pin this one to another node (${NODE_ANNOTATION})`);
}

/** The lowest free VIP of the service CIDR from .0.10 on (as the plan allocates them). */
export function freeServiceIp(plan: LabPlan, existing: readonly WaypointPlan[]): string {
  const svc = parseCidr(plan.serviceCIDR, 'Lab spec.serviceCIDR');
  const used = new Set([...plan.services, ...existing.map((w) => w.service)].map((s) => s.clusterIP));
  for (let n = svc.base + 10; n < svc.base + cidrSize(svc) - 1; n++) if (!used.has(intToIp(n))) return intToIp(n);
  throw new InvalidInputError(`Lab spec.serviceCIDR ${plan.serviceCIDR} has no free address left for a waypoint Service`);
}

/**
 * Plans the waypoint of `gateway` (a rondo-waypoint Gateway) next to the `existing` ones.
 * `uid` is the new Pod's uid; `command` the waypoint's command line. Netns `<lab>-w<K>` and
 * host veth `vw<K>` take the lowest K no existing waypoint has.
 */
export function planWaypoint(plan: LabPlan, existing: readonly WaypointPlan[], gateway: KubeObject, o: { uid: string; command: string[]; env?: Record<string, string> }): WaypointPlan {
  const namespace = gateway.metadata.namespace ?? 'default';
  const name = gateway.metadata.name;
  const what = `Gateway ${namespace}/${name}`;
  if (!DNS_LABEL.test(name) || name.length > MAX_GATEWAY_NAME) {
    throw new InvalidInputError(`${what}: metadata.name must be a DNS label of at most ${MAX_GATEWAY_NAME} characters (it names the waypoint's ServiceAccount, Deployment and Service)`);
  }
  if (existing.some((w) => w.namespace === namespace && w.gateway === name)) throw new InvalidInputError(`${what}: already has a waypoint`);
  const clash = plan.services.find((s) => s.namespace === namespace && s.name === name);
  if (clash !== undefined) throw new InvalidInputError(`${what}: the lab spec already has a Service ${keyOf(clash)}; the waypoint needs a Service of its own name: rename the Gateway or the Service`);
  const annotations: Record<string, unknown> = gateway.metadata.annotations ?? {};
  const node = chooseNode(plan, existing, annotations, what);
  const ip = freePodIp(plan, existing, node);
  const taken = new Set(existing.map((w) => w.pod.netns));
  let k = 1;
  while (taken.has(`${plan.name}-w${k}`)) k++;
  const replicaSet = `${name}-${hex(`${o.uid}/rs`, 9)}`;
  const pod: PodPlan = {
    namespace, name: `${replicaSet}-${hex(o.uid, 5)}`, deployment: name,
    labels: { [GATEWAY_NAME_LABEL]: name, 'rondo.dev/dataplane-mode': 'none', 'rondo.dev/use-waypoint': 'none' },
    serviceAccount: name, node: node.name, netns: `${plan.name}-w${k}`, ip, hostVeth: `vw${k}`, command: o.command, env: o.env ?? {},
  };
  const service: ServicePlan = {
    namespace, name, labels: { [GATEWAY_NAME_LABEL]: name, 'rondo.dev/use-waypoint': 'none' }, selector: { [GATEWAY_NAME_LABEL]: name },
    clusterIP: freeServiceIp(plan, existing), ports: [{ name: 'mesh', port: PORTS.hbone, targetPort: PORTS.hbone, protocol: 'TCP' }], endpoints: [keyOf(pod)],
  };
  return { namespace, gateway: name, uid: o.uid, replicaSet, pod, service };
}

/** The Pod of a waypoint; `phase` Pending until its /healthz/ready answers (not Ready, no traffic). */
export function waypointPodObject(w: WaypointPlan, phase: PodPhase): KubeObject {
  const o = podObject(w.pod, w.uid, phase);
  const ownerReferences = [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: w.replicaSet, uid: `${w.uid}-rs`, controller: true, blockOwnerDeletion: true }];
  return { ...o, metadata: { ...o.metadata, ownerReferences } as KubeObject['metadata'] };
}

/** The Service `<ns>/<gateway>` (port 15008 `mesh`) of a waypoint. */
export function waypointServiceObject(w: WaypointPlan): KubeObject {
  return serviceObject(w.service);
}

/** The EndpointSlice of the waypoint's Service; its endpoint is ready only once the pod is. */
export function waypointSliceObject(w: WaypointPlan, ready: boolean): KubeObject {
  return endpointSliceObject(w.service, new Map([[keyOf(w.pod), { plan: w.pod, uid: w.uid, ready }]]));
}

/** The plan with the waypoints' pods and Services added (for DNAT rules, hosts files, lookups). */
export function withWaypoints(plan: LabPlan, waypoints: readonly WaypointPlan[]): LabPlan {
  if (waypoints.length === 0) return plan;
  return { ...plan, pods: [...plan.pods, ...waypoints.map((w) => w.pod)], services: [...plan.services, ...waypoints.map((w) => w.service)] };
}
