/** HBONE: HTTP/2 CONNECT over mutual TLS 1.3 between node agents and waypoints (port 15008). */
export { HboneClientPool, HboneConnectError, DEFAULT_WINDOW } from './hbone-client.ts';
export type { HboneClientPoolOptions, HboneConnectRequest, PendingTunnel } from './hbone-client.ts';
export { HboneServer, acceptTunnel, refuseTunnel } from './hbone-server.ts';
export type { HboneServerOptions, InboundTunnel, ServerCredentials } from './hbone-server.ts';
export { pump } from './hbone-pump.ts';
export type { PumpResult, PumpHooks } from './hbone-pump.ts';
export {
  REASON_HEADER, BadAuthorityError, parseAuthority, formatAuthority, buildBaggage, parseBaggage, newTraceparent,
} from './hbone-headers.ts';
export type { HostPort, BaggageSource } from './hbone-headers.ts';
