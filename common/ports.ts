/**
 * The well-known ports, equal to Istio ambient's so operators, dashboards and NetworkPolicies
 * written for it keep working. Flags, listeners, capture rules, the lab and the bench all
 * read them from here; docs/architecture.md has the table of who listens on which.
 */
export const PORTS = {
  /** Node agent: outbound capture, the REDIRECT target for traffic leaving enrolled pods. */
  outboundCapture: 15001,
  /** Node agent: inbound plaintext capture (traffic to enrolled pods from outside the mesh). */
  inboundCapture: 15006,
  /** Agent and waypoint: HBONE (HTTP/2 CONNECT over mutual TLS 1.3). */
  hbone: 15008,
  /** Agent and waypoint: `/metrics` and `/healthz/ready`. */
  proxyHealth: 15020,
  /** Agent and waypoint: admin on 127.0.0.1 (config dump, certificates, connections). */
  proxyAdmin: 15000,
  /** Controller: WebSocket config push and CSR signing (TLS). */
  controllerPush: 15012,
  /** Controller: `/metrics`, health, debug pages. */
  controllerHttp: 15014,
} as const;

/** The HBONE port, as a type: decisions that dial HBONE carry exactly this port. */
export type HbonePort = typeof PORTS.hbone;
