/**
 * Where each watched kind lives on the Kubernetes API and how to list it with the client
 * library: one table, so the reflector never special-cases a kind.
 */
import { CoreV1Api, CustomObjectsApi, DiscoveryV1Api } from '@kubernetes/client-node';
import type { KubeConfig } from '@kubernetes/client-node';
import type { WatchedKind } from './types.ts';

/** One page of a list call, normalised across typed and custom-object APIs. */
export interface ListPage {
  /** Items as the library returns them (class instances for built-ins, JSON for custom objects). */
  items: unknown[];
  resourceVersion: string;
  /** Continue token for the next page; empty on the last page. */
  continueToken: string;
}

/** Lists one page; `limit`/`continueToken` follow the API's chunking contract. */
export type ListFn = (page: { limit: number; continueToken?: string }) => Promise<ListPage>;

/** Static facts about one kind. */
export interface KindInfo {
  kind: WatchedKind;
  apiVersion: string;
  /** Cluster-wide list/watch path (all namespaces). */
  path: string;
  /** Optional kinds come from CRDs that may not be installed: a 404 means "none yet". */
  optional: boolean;
  /** Builds the list function against a cluster. */
  makeList(kc: KubeConfig): ListFn;
}

interface ListMetaLike { resourceVersion?: string; _continue?: string; continue?: string }
interface ListLike { items?: unknown[]; metadata?: ListMetaLike }

function page(list: ListLike): ListPage {
  const meta = list.metadata ?? {};
  return {
    items: list.items ?? [],
    resourceVersion: meta.resourceVersion ?? '',
    // Typed lists rename `continue` to `_continue`; custom-object lists are raw JSON.
    continueToken: meta._continue ?? meta.continue ?? '',
  };
}

function args(p: { limit: number; continueToken?: string }): { limit: number; _continue?: string } {
  return p.continueToken !== undefined && p.continueToken !== '' ? { limit: p.limit, _continue: p.continueToken } : { limit: p.limit };
}

function core(kind: WatchedKind, plural: string, call: (api: CoreV1Api, a: { limit: number; _continue?: string }) => Promise<ListLike>): KindInfo {
  return {
    kind, apiVersion: 'v1', path: `/api/v1/${plural}`, optional: false,
    makeList: (kc) => { const api = kc.makeApiClient(CoreV1Api); return async (p) => page(await call(api, args(p))); },
  };
}

function custom(kind: WatchedKind, group: string, version: string, plural: string): KindInfo {
  return {
    kind, apiVersion: `${group}/${version}`, path: `/apis/${group}/${version}/${plural}`, optional: true,
    makeList: (kc) => {
      const api = kc.makeApiClient(CustomObjectsApi);
      return async (p) => page((await api.listClusterCustomObject({ group, version, plural, ...args(p) })) as ListLike);
    },
  };
}

const GATEWAY = 'gateway.networking.k8s.io';

/** Every kind the Kubernetes source can watch, keyed by kind. */
export const KIND_INFO: Readonly<Record<WatchedKind, KindInfo>> = {
  Namespace: core('Namespace', 'namespaces', (api, a) => api.listNamespace(a)),
  Node: core('Node', 'nodes', (api, a) => api.listNode(a)),
  Pod: core('Pod', 'pods', (api, a) => api.listPodForAllNamespaces(a)),
  Service: core('Service', 'services', (api, a) => api.listServiceForAllNamespaces(a)),
  EndpointSlice: {
    kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1', path: '/apis/discovery.k8s.io/v1/endpointslices', optional: false,
    makeList: (kc) => {
      const api = kc.makeApiClient(DiscoveryV1Api);
      return async (p) => page(await api.listEndpointSliceForAllNamespaces(args(p)));
    },
  },
  Gateway: custom('Gateway', GATEWAY, 'v1', 'gateways'),
  HTTPRoute: custom('HTTPRoute', GATEWAY, 'v1', 'httproutes'),
  GRPCRoute: custom('GRPCRoute', GATEWAY, 'v1', 'grpcroutes'),
  AuthorizationPolicy: custom('AuthorizationPolicy', 'security.rondo.dev', 'v1alpha1', 'authorizationpolicies'),
  PeerAuthentication: custom('PeerAuthentication', 'security.rondo.dev', 'v1alpha1', 'peerauthentications'),
  TrafficPolicy: custom('TrafficPolicy', 'traffic.rondo.dev', 'v1alpha1', 'trafficpolicies'),
};
