/**
 * The push protocol between the controller and its proxies (node agents, waypoints):
 * every message and every pushed resource, as zod schemas. This file is the contract;
 * both sides validate with it at the boundary and never pass wire objects further in.
 *
 * Transport: WebSocket over TLS on port 15012, one JSON object per message.
 * Authentication: `Authorization: Bearer <token>` on the upgrade request.
 *
 * Framing: proxy -> controller is always a text frame of JSON. Controller -> proxy is a text
 * frame of JSON, or — only to a proxy whose upgrade request carries
 * `x-rondo-frame-encoding: deflate` — a binary frame holding the zlib (RFC 1950) deflate of
 * the same UTF-8 JSON; the controller does this for messages of COMPRESS_MIN_BYTES or more.
 * A compressed message is encoded once and the same bytes go to every proxy that needs it
 * (a 3.4 MB snapshot is ~0.3 MB on the wire and in every TLS write buffer). The receiver
 * inflates with a MAX_MESSAGE_BYTES output cap, then validates exactly as a text frame.
 * Proxies without the header (older builds) keep getting text frames.
 */
import { deflateSync, inflateSync } from 'node:zlib';
import { z } from 'zod';
import { isSpiffeId } from './spiffe.ts';
import { GRPCRouteSpec, HTTPRouteSpec } from './gateway-api.ts';
import { TrafficPolicySpec } from './traffic-policy.ts';

/** Largest message either side accepts; bigger frames close the connection (1009). */
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/** Upgrade-request header by which a proxy accepts compressed binary frames. */
export const FRAME_ENCODING_HEADER = 'x-rondo-frame-encoding';
/** The one frame encoding defined so far. */
export const FRAME_ENCODING = 'deflate';
/** Controller messages at least this large are compressed (for proxies that accept it). */
export const COMPRESS_MIN_BYTES = 16 * 1024;

/** Compresses one message's JSON for a binary frame (fast level: it runs once per version). */
export function deflateMessage(json: string | Buffer): Buffer {
  return deflateSync(json, { level: 1 });
}

/**
 * The JSON text of a received frame: text frames as they are, binary frames inflated with
 * the output capped at MAX_MESSAGE_BYTES (a small frame must not expand without bound).
 * Throws with a reason when the frame is not valid deflate data or inflates too large.
 */
export function frameText(data: Buffer, isBinary: boolean): string {
  if (!isBinary) return data.toString('utf8');
  try {
    return inflateSync(data, { maxOutputLength: MAX_MESSAGE_BYTES }).toString('utf8');
  } catch (e) {
    const code = (e as { code?: string }).code;
    throw new Error(code === 'ERR_BUFFER_TOO_LARGE' ? `compressed frame inflates beyond ${MAX_MESSAGE_BYTES} bytes` : `binary frame is not zlib deflate data (${(e as Error).message})`, { cause: e });
  }
}

/** WebSocket path of the push endpoint. */
export const PUSH_PATH = '/rondo/v1/push';

const name = z.string().min(1).max(253);
const ip = z.union([z.ipv4(), z.ipv6()]);
const port = z.int().min(1).max(65535);
const spiffeId = z.string().refine(isSpiffeId, 'must be spiffe://<trust-domain>/ns/<ns>/sa/<sa> (lowercase trust domain; letters, digits, ., -, _)');
const labels = z.record(z.string(), z.string());

/** Who a proxy says it is. */
export const ProxyIdentity = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('node-agent'), node: name }),
  z.strictObject({ kind: z.literal('waypoint'), namespace: name, name }),
]);
export type ProxyIdentity = z.infer<typeof ProxyIdentity>;

/** A waypoint that traffic to a workload or service must go through. */
export const WaypointRef = z.strictObject({
  namespace: name,
  name,
});
export type WaypointRef = z.infer<typeof WaypointRef>;

/** One pod. `key` is the pod uid. */
export const Workload = z.strictObject({
  uid: name,
  namespace: name,
  /** Pod name. */
  name,
  /** Owning workload (Deployment) name, used as `*_workload` metric label. */
  workloadName: name,
  serviceAccount: name,
  identity: spiffeId,
  ips: z.array(ip).min(1),
  node: name,
  /** All pod labels: selectors match on them; `app` and `version` label telemetry. */
  labels,
  /** In the mesh: traffic is captured and carried over HBONE. */
  enrolled: z.boolean(),
  waypoint: WaypointRef.optional(),
});
export type Workload = z.infer<typeof Workload>;

export const ServicePort = z.strictObject({
  name: z.string().optional(),
  port,
  targetPort: port,
  appProtocol: z.string().optional(),
});
export type ServicePort = z.infer<typeof ServicePort>;

export const Endpoint = z.strictObject({
  workloadUid: name,
  ip,
  ready: z.boolean(),
});
export type Endpoint = z.infer<typeof Endpoint>;

/** One Service. `key` is `<namespace>/<name>`. */
export const Service = z.strictObject({
  namespace: name,
  name,
  /** `<name>.<namespace>.svc.cluster.local` */
  hostname: name,
  vips: z.array(ip),
  ports: z.array(ServicePort),
  endpoints: z.array(Endpoint),
  waypoint: WaypointRef.optional(),
});
export type Service = z.infer<typeof Service>;

const stringMatchList = z.array(z.string().min(1)).optional();

/**
 * An ipBlocks entry: one address or a CIDR, IPv4 or IPv6, prefix length in range (host bits
 * may be set, as Istio allows). A typo must be rejected, not silently match nobody.
 */
export const IpBlock = z.union([z.ipv4(), z.ipv6(), z.cidrv4(), z.cidrv6()], {
  error: (iss) => `${JSON.stringify(iss.input)} is not an IP address or CIDR (e.g. 10.244.0.0/16, 192.0.2.7, fd00::/64; prefix at most /32 for IPv4, /128 for IPv6)`,
});

/** Who a rule applies to (Istio's `from.source`). Fields are ANDed, values within a field ORed. */
export const PolicySource = z.strictObject({
  principals: stringMatchList,
  notPrincipals: stringMatchList,
  namespaces: stringMatchList,
  notNamespaces: stringMatchList,
  ipBlocks: z.array(IpBlock).optional(),
  notIpBlocks: z.array(IpBlock).optional(),
});
export const PolicyOperation = z.strictObject({
  ports: z.array(port).optional(),
  notPorts: z.array(port).optional(),
  /** L7 fields: only a waypoint can enforce them. */
  methods: stringMatchList,
  notMethods: stringMatchList,
  paths: stringMatchList,
  notPaths: stringMatchList,
  hosts: stringMatchList,
  notHosts: stringMatchList,
});
export const PolicyRule = z.strictObject({
  from: z.array(PolicySource).optional(),
  to: z.array(PolicyOperation).optional(),
});
export type PolicyRule = z.infer<typeof PolicyRule>;

/** AuthorizationPolicy (security.rondo.dev/v1alpha1). `key` is `<namespace>/<name>`. */
export const AuthorizationPolicy = z.strictObject({
  namespace: name,
  name,
  /** Absent: every workload of the namespace (or of the mesh, in the root namespace). */
  selector: labels.optional(),
  action: z.enum(['ALLOW', 'DENY', 'AUDIT']),
  rules: z.array(PolicyRule),
});
export type AuthorizationPolicy = z.infer<typeof AuthorizationPolicy>;

/** PeerAuthentication (security.rondo.dev/v1alpha1). `key` is `<namespace>/<name>`. */
export const PeerAuthentication = z.strictObject({
  namespace: name,
  name,
  selector: labels.optional(),
  mode: z.enum(['STRICT', 'PERMISSIVE']),
});
export type PeerAuthentication = z.infer<typeof PeerAuthentication>;

const l7Meta = { namespace: name, name };
/** RFC 3339 `metadata.creationTimestamp` of a route: the oldest route wins precedence ties. */
const creationTimestamp = z.iso.datetime({ offset: true }).optional();

/**
 * Resources a waypoint needs but a node agent does not read: routes and traffic policies as
 * their typed, validated specs (common/gateway-api.ts, common/traffic-policy.ts), so a proxy
 * NACKs a bad one exactly as the controller rejects it; waypoint Gateways as they are.
 */
export const L7Resource = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('HTTPRoute'), ...l7Meta, creationTimestamp, spec: HTTPRouteSpec }),
  z.strictObject({ kind: z.literal('GRPCRoute'), ...l7Meta, creationTimestamp, spec: GRPCRouteSpec }),
  z.strictObject({ kind: z.literal('TrafficPolicy'), ...l7Meta, spec: TrafficPolicySpec }),
  z.strictObject({ kind: z.literal('Gateway'), ...l7Meta, spec: z.record(z.string(), z.unknown()) }),
]);
export type L7Resource = z.infer<typeof L7Resource>;

/** Mesh-wide settings. */
export const MeshConfig = z.strictObject({
  trustDomain: name,
  /** PEM roots; several while a root is being rotated. */
  trustBundle: z.array(z.string().min(1)).min(1),
  /** Namespace whose policies apply mesh-wide (`rondo-system`). */
  rootNamespace: name,
});
export type MeshConfig = z.infer<typeof MeshConfig>;

/** Every resource type the controller pushes, keyed by type name. */
export const ResourceSchemas = {
  workloads: Workload,
  services: Service,
  authorizationPolicies: AuthorizationPolicy,
  peerAuthentications: PeerAuthentication,
  l7: L7Resource,
} as const;
export type ResourceType = keyof typeof ResourceSchemas;
export const RESOURCE_TYPES = Object.keys(ResourceSchemas) as ResourceType[];

/**
 * Resources travel as `{ key, value }` with `value` left unknown at the envelope level:
 * each one is validated on its own, so one bad resource is NACKed alone.
 */
const ResourceEntry = z.strictObject({ key: name, value: z.unknown() });
export type ResourceEntry = z.infer<typeof ResourceEntry>;
const resourceMap = z.strictObject({
  workloads: z.array(ResourceEntry).optional(),
  services: z.array(ResourceEntry).optional(),
  authorizationPolicies: z.array(ResourceEntry).optional(),
  peerAuthentications: z.array(ResourceEntry).optional(),
  l7: z.array(ResourceEntry).optional(),
});
const removeMap = z.strictObject({
  workloads: z.array(name).optional(),
  services: z.array(name).optional(),
  authorizationPolicies: z.array(name).optional(),
  peerAuthentications: z.array(name).optional(),
  l7: z.array(name).optional(),
});

// ---- proxy -> controller ----

export const HelloMessage = z.strictObject({
  type: z.literal('hello'),
  proxy: ProxyIdentity,
  /** Last version the proxy applied; the controller may answer with a delta from it. */
  lastVersion: z.int().nonnegative().optional(),
});
export const AckMessage = z.strictObject({
  type: z.literal('ack'),
  version: z.int().nonnegative(),
  nonce: z.string(),
});
/**
 * One thing a proxy did not take from a snapshot or delta. `type` is a resource type (the
 * proxy keeps its previous value of `key` after a delta, holds nothing for it after a
 * snapshot), `mesh` with key `trustBundle` (the message's mesh settings were not taken: the
 * proxy keeps its previous ones, or holds no config if it had none), or `config` with key
 * `*` (nothing of the message was taken: the proxy keeps its previous configuration).
 */
export const Rejection = z.strictObject({ type: z.string(), key: z.string(), reason: z.string() });
export type Rejection = z.infer<typeof Rejection>;
/** The `type`s of a Rejection that are not resource types. */
export const REJECTED = { mesh: 'mesh', config: 'config' } as const;
export const NackMessage = z.strictObject({
  type: z.literal('nack'),
  version: z.int().nonnegative(),
  nonce: z.string(),
  rejected: z.array(Rejection).min(1),
});
export const CsrMessage = z.strictObject({
  type: z.literal('csr'),
  /** Correlates the answer. */
  id: z.string().min(1).max(64),
  identity: spiffeId,
  /** PKCS#10, PEM. */
  csr: z.string().min(1).max(16384),
});
export const ProxyMessage = z.discriminatedUnion('type', [HelloMessage, AckMessage, NackMessage, CsrMessage]);
export type ProxyMessage = z.infer<typeof ProxyMessage>;

// ---- controller -> proxy ----

export const SnapshotMessage = z.strictObject({
  type: z.literal('snapshot'),
  version: z.int().nonnegative(),
  nonce: z.string(),
  mesh: MeshConfig,
  resources: resourceMap,
});
export const DeltaMessage = z.strictObject({
  type: z.literal('delta'),
  version: z.int().nonnegative(),
  nonce: z.string(),
  mesh: MeshConfig.optional(),
  upserts: resourceMap,
  removes: removeMap,
});
export const CertMessage = z.strictObject({
  type: z.literal('cert'),
  id: z.string(),
  /** Leaf first, then intermediates; absent with `error`. */
  chain: z.array(z.string()).optional(),
  error: z.string().optional(),
});
export const ControllerMessage = z.discriminatedUnion('type', [SnapshotMessage, DeltaMessage, CertMessage]);
export type ControllerMessage = z.infer<typeof ControllerMessage>;
export type SnapshotMessage = z.infer<typeof SnapshotMessage>;
export type DeltaMessage = z.infer<typeof DeltaMessage>;

/** Short human-readable form of a zod error: `path: message; …`. */
export function describeZodError(err: z.ZodError): string {
  return err.issues.map((i) => `${i.path.length > 0 ? i.path.join('.') : '(root)'}: ${i.message}`).join('; ');
}
