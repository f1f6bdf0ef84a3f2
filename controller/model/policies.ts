/**
 * Rondo security CRDs -> wire policies (pure). Specs are validated with zod (unknown fields
 * rejected, so a typo is reported instead of silently widening a policy; ipBlocks must be
 * IPs or CIDRs); a bad resource is rejected alone with a reason. L7 kinds: l7.ts.
 */
import { z } from 'zod';
import { AuthorizationPolicy, IpBlock, PeerAuthentication, describeZodError } from '../../common/wire.ts';
import type { PolicyRule } from '../../common/wire.ts';
import type { KubeObject } from '../sources/types.ts';

/**
 * Result of converting one policy-like object; `statusReason` is the status condition reason
 * when it is not the generic `Invalid` (e.g. Gateway API `UnsupportedValue`).
 */
export type PolicyResult<T> = { value: T } | { error: string; statusReason?: string };

const strList = z.array(z.string().min(1)).optional();
const portish = z.union([z.int().min(1).max(65535), z.string().regex(/^\d{1,5}$/, 'must be a port number').transform(Number)]);
const selectorSpec = z.strictObject({ matchLabels: z.record(z.string(), z.string()) }).optional();

const AuthzSpec = z.strictObject({
  selector: selectorSpec,
  action: z.enum(['ALLOW', 'DENY', 'AUDIT']).default('ALLOW'),
  rules: z.array(z.strictObject({
    from: z.array(z.strictObject({
      source: z.strictObject({
        principals: strList, notPrincipals: strList, namespaces: strList, notNamespaces: strList,
        ipBlocks: z.array(IpBlock).optional(), notIpBlocks: z.array(IpBlock).optional(),
      }),
    })).optional(),
    to: z.array(z.strictObject({
      operation: z.strictObject({
        ports: z.array(portish).optional(), notPorts: z.array(portish).optional(),
        methods: strList, notMethods: strList, paths: strList, notPaths: strList, hosts: strList, notHosts: strList,
      }),
    })).optional(),
  })).optional(),
});

const PeerAuthSpec = z.strictObject({
  selector: selectorSpec,
  mtls: z.strictObject({ mode: z.enum(['STRICT', 'PERMISSIVE']) }),
});

function clean<T extends Record<string, unknown>>(o: T): T {
  // exactOptionalPropertyTypes: drop undefined fields rather than carry them on the wire.
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return o;
}

/** AuthorizationPolicy (security.rondo.dev/v1alpha1, Istio-shaped spec) -> wire policy. */
export function toAuthorizationPolicy(obj: KubeObject): PolicyResult<AuthorizationPolicy> {
  const ns = obj.metadata.namespace;
  if (ns === undefined) return { error: 'metadata.namespace: missing' };
  const s = AuthzSpec.safeParse(obj.spec ?? {});
  if (!s.success) return { error: `spec: ${describeZodError(s.error)}` };
  const spec = s.data;
  const rules: PolicyRule[] = (spec.rules ?? []).map((r) => clean({
    from: r.from?.map((f) => clean({ ...f.source })),
    to: r.to?.map((x) => clean({ ...x.operation })),
  }));
  const out = AuthorizationPolicy.safeParse(clean({
    namespace: ns, name: obj.metadata.name, selector: spec.selector?.matchLabels, action: spec.action, rules,
  }));
  if (!out.success) return { error: describeZodError(out.error) };
  return { value: Object.freeze(out.data) };
}

/** PeerAuthentication (security.rondo.dev/v1alpha1) -> wire. */
export function toPeerAuthentication(obj: KubeObject): PolicyResult<PeerAuthentication> {
  const ns = obj.metadata.namespace;
  if (ns === undefined) return { error: 'metadata.namespace: missing' };
  const s = PeerAuthSpec.safeParse(obj.spec ?? {});
  if (!s.success) return { error: `spec: ${describeZodError(s.error)}` };
  const out = PeerAuthentication.safeParse(clean({ namespace: ns, name: obj.metadata.name, selector: s.data.selector?.matchLabels, mode: s.data.mtls.mode }));
  if (!out.success) return { error: describeZodError(out.error) };
  return { value: Object.freeze(out.data) };
}
