/**
 * Rondo's error codes and the error class that carries them. Every `RONDO_E_…` code is in
 * ERROR_CODES with the cause it stands for, one code per cause: a new failure either fits a
 * cause below or gets its own entry here (RondoError's constructor accepts nothing else).
 *
 * Refusals in the data path (a connection or request the proxy turns away) carry their code
 * too: metrics label them with reasonLabel(code) and access logs write the code itself, so
 * neither re-reads the human message.
 */

/** Every error code, with a one-line cause. */
export const ERROR_CODES = {
  // ---- input and start-up ----
  RONDO_E_INVALID: 'input (a flag, lab spec, mesh config, pushed resource or message) does not validate; the message names the field',
  RONDO_E_USAGE: 'the `rondo` command line is wrong (unknown command or option, missing argument)',
  RONDO_E_CONFIG: 'a file or directory named by a flag (token, CA, tokens.json, state directory, lab spec) is missing, unreadable or holds nothing usable',
  RONDO_E_SPIFFE_ID: 'a SPIFFE ID is not spiffe://<trust-domain>/ns/<namespace>/sa/<service-account> with valid characters',
  RONDO_E_LISTEN: 'a listening port cannot be bound (taken by another process, or no permission)',
  RONDO_E_NOT_READY: 'an object was used before it finished starting (API misuse inside a process)',
  RONDO_E_CLOSED: 'an operation was asked of a component that is closed or closing (shutdown, drain)',
  RONDO_E_FATAL: 'an unexpected error (not a RondoError) ended the process',
  RONDO_E_METRIC_CONFLICT: 'a metric is already registered in the given registry by someone else',

  // ---- controller ----
  RONDO_E_AUTH: 'a proxy presented no token, an unknown one, or one TokenReview rejected or could not review',
  RONDO_E_KUBE_SYNC: 'the Kubernetes source did not finish its first list of every kind (start-up deadline passed, or closed first)',
  RONDO_E_VERSION: 'the push server was given a config version that is not above the last one',
  RONDO_E_PUSH_TLS: "the push server's TLS setup failed (serving key or certificate from the CA unusable)",
  RONDO_E_CA_INVALID: "the CA's files (root, intermediate, key, chain, bundle) are missing, mismatched, expired or not a CA",
  RONDO_E_CSR_MALFORMED: 'a CSR is not one PEM PKCS#10 request with a valid self-signature and an accepted key',
  RONDO_E_CSR_IDENTITY: 'a CSR asks for another identity than expected, or for one outside the trust domain',
  RONDO_E_CSR_FORBIDDEN: 'a proxy asked for an identity it may not hold (no enrolled pod with it on its node; another waypoint)',

  // ---- proxies: control plane client, certificates, capture ----
  RONDO_E_PUSH_URL: 'the controller URL is not wss://host:port',
  RONDO_E_PUSH_DISCONNECTED: 'no connection to the controller (never connected, or lost while waiting for an answer)',
  RONDO_E_CSR_REFUSED: 'the controller answered a CSR with an error',
  RONDO_E_CSR_TIMEOUT: 'the controller did not answer a CSR in time',
  RONDO_E_CERT_SIGN: 'getting a workload certificate signed failed (controller unreachable or refusing)',
  RONDO_E_CERT_INVALID: 'the controller returned a certificate that is unparsable, for another identity, for another key or expired',
  RONDO_E_NO_TRUST_BUNDLE: 'a certificate was needed before the mesh config delivered a trust bundle',
  RONDO_E_WORKER: 'a proxy data-path worker failed or exited during start-up',
  RONDO_E_CAPTURE: 'programming the capture rules (iptables, ipset) failed',
  RONDO_E_ORIG_DST: "reading a captured socket's original destination (SO_ORIGINAL_DST) failed",

  // ---- data path: refusals (metrics and access logs carry these) ----
  RONDO_E_NO_CONFIG: 'the proxy has no configuration from the controller yet',
  RONDO_E_SOURCE_NOT_ENROLLED: 'a captured connection comes from an address that is not an enrolled pod of this node',
  RONDO_E_NO_READY_ENDPOINTS: 'the destination service has no ready endpoint on that port',
  RONDO_E_WAYPOINT_UNAVAILABLE: "the destination's waypoint has no ready pod (refused rather than bypassing its policy)",
  RONDO_E_POLICY_DENIED: 'an AuthorizationPolicy denied the connection or request (a DENY matched, or no ALLOW did)',
  RONDO_E_PLAINTEXT_NOT_ALLOWED: 'a plaintext connection reached a pod whose PeerAuthentication mode is STRICT',
  RONDO_E_UNKNOWN_DESTINATION: 'the destination is not an enrolled pod on this node',
  RONDO_E_TARGET_MISMATCH: 'a CONNECT names another pod than the one whose certificate the connection was made to',
  RONDO_E_CERTIFICATE_UNAVAILABLE: 'the source workload has no certificate yet',
  RONDO_E_UPSTREAM_FAILED: 'the TCP connection to the destination failed (refused, unreachable, reset)',
  RONDO_E_UPSTREAM_TIMEOUT: 'the TCP connection to the destination was not established in time',
  RONDO_E_INTERNAL: 'a bug: the proxy threw while deciding what to do with a connection',

  // ---- waypoint: request refusals (response_flags, access logs) ----
  RONDO_E_NOT_SERVED: 'a CONNECT reached a waypoint for a service or workload that is not bound to it',
  RONDO_E_NO_ROUTE: 'no rule of the HTTPRoutes/GRPCRoutes attached to the service matches the request (404 / UNIMPLEMENTED)',
  RONDO_E_BACKEND_NOT_FOUND: "a route's backend Service is unknown to the waypoint, or has no such port",
  RONDO_E_REQUEST_TIMEOUT: "the route's request or backendRequest timeout passed before the response (504)",
  RONDO_E_UPSTREAM_RESET: 'the upstream reset or closed the stream before the response was complete',
  RONDO_E_BAD_REQUEST: 'the client sent malformed HTTP (bad header bytes, conflicting framing, invalid chunking, oversized headers)',
  RONDO_E_CLIENT_GONE: 'the client went away before the response was sent',

  // ---- HBONE ----
  RONDO_E_HBONE_AUTHORITY: 'a CONNECT :authority is not <ip>:<port>',
  RONDO_E_HBONE_PROTOCOL: 'a peer on the HBONE port broke the protocol (TLS handshake, no h2 ALPN, not a CONNECT, bad authority, oversized headers, session error)',
  RONDO_E_HBONE_PEER_IDENTITY: 'the HBONE peer presented another SPIFFE ID than the control plane expects at that address',
  RONDO_E_HBONE_TIMEOUT: 'the HBONE connection (TCP + TLS + HTTP/2) was not established in time',
  RONDO_E_HBONE_CONNECT: 'the HBONE connection failed before HTTP/2 was up (refused, TLS failure)',
  RONDO_E_HBONE_STREAM: 'the HBONE CONNECT stream closed before a response',
  RONDO_E_HBONE_REFUSED: 'the HBONE peer answered the CONNECT with a non-200 status',

  // ---- lab, demo app, bench ----
  RONDO_E_LAB_NOT_ROOT: 'the lab needs root',
  RONDO_E_LAB_TOOL_MISSING: 'a tool the lab needs (ip, iptables-restore, ...) is missing or broken',
  RONDO_E_LAB_COMMAND: 'a command the lab ran (ip, iptables, ...) failed',
  RONDO_E_LAB_EXEC: 'the command given to `rondo lab exec` could not be started',
  RONDO_E_LAB_PROCESS: 'the lab could not start a pod or mesh process',
  RONDO_E_LAB_PROCESS_EXITED: 'a mesh process the lab started exited before it was ready',
  RONDO_E_LAB_NOT_READY: 'a pod or mesh process the lab started was not ready within its deadline',
  RONDO_E_LAB_CLASH: 'a network namespace the lab would create already exists and is not the lab\'s',
  RONDO_E_LAB_EXISTS: 'a lab of that name already exists',
  RONDO_E_LAB_NOT_FOUND: 'no lab of that name is running (or its record is incomplete)',
  RONDO_E_LAB_AMBIGUOUS: 'several labs run and the command did not say which',
  RONDO_E_LAB_UNKNOWN_NAME: 'a pod, service, node or mesh process named in a lab command is not in the lab',
  RONDO_E_DEMO_TIMEOUT: 'the demo client got no answer in time',
  RONDO_E_DEMO_NO_STATUS: 'a demo request stream closed without a response (or without grpc-status)',
  RONDO_E_DEMO_TCP: 'the demo TCP client failed (connect error, early close, wrong echo)',
  RONDO_E_BENCH_LOAD: 'a bench load generator (wrk, iperf3, connection holder) failed or did no work',
} as const;

/** One of the registered codes. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** True when `code` is a registered code (for codes that crossed a process boundary). */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CODES, code);
}

const PREFIX_LENGTH = 'RONDO_E_'.length;
const labels = new Map<ErrorCode, string>();

/**
 * The code as a metric label value: `RONDO_E_POLICY_DENIED` -> `policy_denied`. Bounded by
 * the registry, so a `reason` label built from it cannot grow without limit.
 */
export function reasonLabel(code: ErrorCode): string {
  let l = labels.get(code);
  if (l === undefined) labels.set(code, (l = code.slice(PREFIX_LENGTH).toLowerCase()));
  return l;
}

/** Errors with a registered code (`RONDO_E_…`) and a message that says what to check. */
export class RondoError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'RondoError';
    this.code = code;
  }
}

/** A configuration or resource that does not validate; names the field at fault. */
export class InvalidInputError extends RondoError {
  constructor(message: string, options?: ErrorOptions) {
    super('RONDO_E_INVALID', message, options);
    this.name = 'InvalidInputError';
  }
}

/** Returns the message of anything thrown. */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
