/** Public surface of the controller package. */
export { Controller } from './controller.ts';
export type { ControllerOptions, CaLike } from './controller.ts';
export { ObjectStore, objectKey } from './store.ts';
export type { StoreReader } from './store.ts';
export { ModelBuilder, buildSnapshot, forProxy } from './model/build.ts';
export type { MeshSnapshot, MeshOptions } from './model/build.ts';
export { PushServer } from './push/server.ts';
export type { PushServerOptions, ProxyStatus } from './push/server.ts';
export { TokenFileAuthenticator, AuthenticationError, proxyKey } from './push/auth.ts';
export type { Authenticator } from './push/auth.ts';
export { FileSource, parseManifests } from './sources/files.ts';
export { createControllerMetrics } from './metrics.ts';
export type { ControllerMetrics } from './metrics.ts';
export { parseControllerFlags } from './flags.ts';
export type { InvalidResource } from './model/labels.ts';
