/**
 * Authenticates proxies in Kubernetes with their projected ServiceAccount token (audience
 * `rondo`), checked by a TokenReview. Node agent = the `rondo-system/rondo-node-agent`
 * ServiceAccount, its node taken from the token's bound node
 * (`authentication.kubernetes.io/node-name`, Kubernetes 1.30+); waypoint = the ServiceAccount
 * named like a `rondo-waypoint` Gateway of its namespace.
 */
import { createHash } from 'node:crypto';
import { AuthenticationV1Api } from '@kubernetes/client-node';
import type { KubeConfig } from '@kubernetes/client-node';
import type { ProxyIdentity } from '../../common/wire.ts';
import { errorMessage } from '../../common/errors.ts';
import { AuthenticationError } from './auth.ts';
import type { Authenticator } from './auth.ts';

/** The parts of a TokenReview status the authenticator reads. */
export interface TokenReviewResult {
  authenticated?: boolean;
  audiences?: string[];
  error?: string;
  user?: { username?: string; extra?: Record<string, string[]> };
}

/** Sends one TokenReview; rejects only when the API could not be asked. */
export type ReviewFn = (token: string, audiences: string[]) => Promise<TokenReviewResult>;

/** Extra key of a bound token naming the node its pod runs on. */
export const NODE_NAME_EXTRA = 'authentication.kubernetes.io/node-name';

/** A ReviewFn on a cluster (`POST /apis/authentication.k8s.io/v1/tokenreviews`). */
export function kubernetesReviewer(kc: KubeConfig): ReviewFn {
  const api = kc.makeApiClient(AuthenticationV1Api);
  return async (token, audiences) => {
    const r = await api.createTokenReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences } } });
    return r.status ?? {};
  };
}

/** Options of TokenReviewAuthenticator. */
export interface TokenReviewOptions {
  review: ReviewFn;
  /** Audience the proxies' projected tokens are minted for (default `rondo`). */
  audience?: string;
  /** ServiceAccount of the node agent DaemonSet (default rondo-system/rondo-node-agent). */
  nodeAgent?: { namespace: string; name: string };
  /** True when `<namespace>/<name>` is a waypoint (a Gateway of class rondo-waypoint). */
  isWaypoint: (namespace: string, name: string) => boolean;
  /** How long a positive review is reused (default 60 s; reconnect storms cost one review per proxy). */
  cacheMs?: number;
  now?: () => number;
}

/** Authenticator backed by the Kubernetes TokenReview API. */
export class TokenReviewAuthenticator implements Authenticator {
  readonly #o: TokenReviewOptions;
  readonly #cache = new Map<string, { identity: ProxyIdentity; until: number }>();

  constructor(o: TokenReviewOptions) {
    this.#o = o;
  }

  async authenticate(req: { token: string | undefined; remoteAddress: string }): Promise<ProxyIdentity> {
    const { token, remoteAddress } = req;
    if (token === undefined || token === '') throw new AuthenticationError(`no bearer token from ${remoteAddress}`);
    const now = (this.#o.now ?? Date.now)();
    const key = createHash('sha256').update(token).digest('hex');
    const hit = this.#cache.get(key);
    if (hit !== undefined && hit.until > now) return hit.identity;
    const audience = this.#o.audience ?? 'rondo';
    let r: TokenReviewResult;
    try {
      r = await this.#o.review(token, [audience]);
    } catch (e) {
      throw new AuthenticationError(`cannot review the token of ${remoteAddress}: ${errorMessage(e)} (check the controller's RBAC: create tokenreviews)`);
    }
    if (r.authenticated !== true) throw new AuthenticationError(`token of ${remoteAddress} rejected by the API server: ${r.error ?? 'not authenticated'}`);
    if (!(r.audiences ?? []).includes(audience)) {
      throw new AuthenticationError(`token of ${remoteAddress} is not for audience "${audience}" (project a ServiceAccount token with audience ${audience})`);
    }
    const identity = this.#identity(r, remoteAddress);
    for (const [k, v] of this.#cache) if (v.until <= now) this.#cache.delete(k);
    this.#cache.set(key, { identity, until: now + (this.#o.cacheMs ?? 60_000) });
    return identity;
  }

  #identity(r: TokenReviewResult, remote: string): ProxyIdentity {
    const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(r.user?.username ?? '');
    if (m === null) throw new AuthenticationError(`token of ${remote} belongs to "${r.user?.username ?? '?'}", not to a ServiceAccount`);
    const [ns = '', sa = ''] = [m[1], m[2]];
    const agent = this.#o.nodeAgent ?? { namespace: 'rondo-system', name: 'rondo-node-agent' };
    if (ns === agent.namespace && sa === agent.name) {
      const node = r.user?.extra?.[NODE_NAME_EXTRA]?.[0];
      if (node === undefined || node === '') {
        throw new AuthenticationError(`node agent token of ${remote} names no node (${NODE_NAME_EXTRA}): needs a pod-bound projected token (Kubernetes 1.30+)`);
      }
      return { kind: 'node-agent', node };
    }
    if (this.#o.isWaypoint(ns, sa)) return { kind: 'waypoint', namespace: ns, name: sa };
    throw new AuthenticationError(`ServiceAccount ${ns}/${sa} (from ${remote}) is neither the node agent's (${agent.namespace}/${agent.name}) nor a rondo-waypoint Gateway's`);
  }
}

/** Tries each authenticator in turn; the first that accepts wins (bootstrap tokens, then TokenReview). */
export function firstOf(...auths: Authenticator[]): Authenticator {
  return {
    async authenticate(req) {
      let last: unknown;
      for (const a of auths) {
        try {
          return await a.authenticate(req);
        } catch (e) {
          last = e;
        }
      }
      throw last instanceof Error ? last : new AuthenticationError(`no authenticator accepted ${req.remoteAddress}`);
    },
  };
}
