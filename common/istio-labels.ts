/**
 * The label sets of Istio's standard metrics, so the dashboards and alerts written for Istio
 * read Rondo's too: `istio_tcp_*` (node agents, per connection) and `istio_requests_*` /
 * `istio_request_*` (waypoints, per request). One list of names per family and one builder
 * each; the proxies' metric modules register counters with these names in this order.
 *
 * Values Istio would take from Envoy come from what the proxy knows: workloads and services
 * from the pushed config, principals from verified certificates (or the identity the control
 * plane expects of a peer), and what is unknown is `unknown`, as Istio reports it.
 */
import type { Service, Workload } from './wire.ts';
import { reasonLabel } from './errors.ts';
import type { ErrorCode } from './errors.ts';

/** Label names of the Istio TCP metrics, in Istio's order. */
export const TCP_LABEL_NAMES = [
  'reporter',
  'source_workload',
  'source_workload_namespace',
  'source_principal',
  'destination_workload',
  'destination_workload_namespace',
  'destination_service',
  'destination_principal',
  'request_protocol',
  'connection_security_policy',
] as const;

/** Label names of the Istio request metrics: the TCP set plus the response. */
export const REQUEST_LABEL_NAMES = [
  ...TCP_LABEL_NAMES,
  'response_code',
  'grpc_response_status',
  'response_flags',
] as const;

/** Resolved label values of one connection. */
export type TcpLabels = Record<(typeof TCP_LABEL_NAMES)[number], string>;
/** Resolved label values of one request. */
export type RequestLabels = Record<(typeof REQUEST_LABEL_NAMES)[number], string>;

/** What Istio reports when a value is not known. */
export const UNKNOWN = 'unknown';

/** The parts of a workload the labels read (the destination agent knows only these of a remote source). */
export type LabelWorkload = Pick<Workload, 'namespace' | 'workloadName'> & { identity?: string };

/** What a connection's labels are built from; absent parts become `unknown` (as Istio does). */
export interface ConnectionLabelInput {
  reporter: 'source' | 'destination';
  source?: LabelWorkload | undefined;
  /** Peer identity seen on the wire; defaults to source.identity when the source is ours. */
  sourcePrincipal?: string | undefined;
  destination?: LabelWorkload | undefined;
  destinationPrincipal?: string | undefined;
  service?: Pick<Service, 'namespace' | 'hostname'> | undefined;
  /** `mutual_tls` over HBONE, `none` for plaintext (PERMISSIVE inbound, passthrough). */
  mtls: boolean;
}

/** Builds the Istio TCP label values for one connection. */
export function tcpLabels(i: ConnectionLabelInput): TcpLabels {
  return {
    reporter: i.reporter,
    source_workload: i.source?.workloadName ?? UNKNOWN,
    source_workload_namespace: i.source?.namespace ?? UNKNOWN,
    source_principal: i.sourcePrincipal ?? (i.mtls ? i.source?.identity : undefined) ?? UNKNOWN,
    destination_workload: i.destination?.workloadName ?? UNKNOWN,
    destination_workload_namespace: i.destination?.namespace ?? i.service?.namespace ?? UNKNOWN,
    destination_service: i.service?.hostname ?? UNKNOWN,
    destination_principal: i.destinationPrincipal ?? (i.mtls ? i.destination?.identity : undefined) ?? UNKNOWN,
    request_protocol: 'tcp',
    connection_security_policy: i.mtls ? 'mutual_tls' : 'none',
  };
}

/** What a request's labels are built from: the connection's parts and the response. */
export interface RequestLabelInput extends ConnectionLabelInput {
  protocol: 'http' | 'grpc';
  /** HTTP status sent to the client; 0 when none was (the client went away first). */
  responseCode: number;
  /** grpc-status of a gRPC response, when there was one. */
  grpcStatus?: number | undefined;
  /**
   * Why the proxy answered instead of the upstream (refused, no endpoint, timed out): a
   * registered code. Istio fills `response_flags` with Envoy's letters (UF, NR, …); Rondo
   * writes reasonLabel(code) (`no_ready_endpoints`, …), `-` when the upstream answered.
   */
  code?: ErrorCode | undefined;
}

/** Builds the Istio request label values for one request. */
export function requestLabels(i: RequestLabelInput): RequestLabels {
  return {
    ...tcpLabels(i),
    request_protocol: i.protocol,
    response_code: String(i.responseCode),
    grpc_response_status: i.grpcStatus === undefined ? '' : String(i.grpcStatus),
    response_flags: i.code === undefined ? '-' : reasonLabel(i.code),
  };
}
