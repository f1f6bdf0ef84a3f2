/**
 * TrafficPolicy (traffic.rondo.dev/v1alpha1) spec as a zod schema, kept equal to the CRD in
 * daemonset/crds/trafficpolicies.traffic.rondo.dev.yaml (a test holds the two together):
 * resilience and load-balancing settings a waypoint applies to its targets, attached through
 * Gateway API policy targetRefs. Like gateway-api.ts: defaults filled, no transforms.
 */
import { z } from 'zod';
import { Duration, PositiveDuration } from './gateway-api.ts';

const GATEWAY_GROUP = 'gateway.networking.k8s.io';

/** An object in the policy's namespace: a Service (group "") or a route (Gateway API group). */
export const PolicyTargetRef = z.strictObject({
  group: z.string().max(253).regex(/^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/, 'must be "" (core) or a DNS subdomain'),
  kind: z.enum(['Service', 'HTTPRoute', 'GRPCRoute']),
  name: z.string().min(1).max(253),
  /** A Service port name or a route rule name. */
  sectionName: z.string().min(1).max(253).optional(),
}).superRefine((r, ctx) => {
  const want = r.kind === 'Service' ? '' : GATEWAY_GROUP;
  if (r.group !== want) ctx.addIssue({ code: 'custom', path: ['group'], message: `a ${r.kind} target needs group ${JSON.stringify(want)}` });
});
export type PolicyTargetRef = z.infer<typeof PolicyTargetRef>;

/** Upstream connection limits per endpoint. */
export const ConnectionPool = z.strictObject({
  maxConnections: z.int().min(1).optional(),
  /** Requests queued while every connection is busy; beyond it, 503. */
  maxPendingRequests: z.int().min(0).optional(),
  /** 0: unlimited. */
  maxRequestsPerConnection: z.int().min(0).optional(),
  connectTimeout: PositiveDuration.optional(),
  /** 0s: never close idle connections. */
  idleTimeout: Duration.optional(),
});

/** Failure accrual: too many consecutive failures eject an endpoint for a while. */
export const OutlierDetection = z.strictObject({
  consecutiveFailures: z.int().min(1).optional(),
  interval: PositiveDuration.optional(),
  /** Ejection lasts this times the number of ejections so far. */
  baseEjectionTime: PositiveDuration.optional(),
  maxEjectionPercent: z.int().min(0).max(100).optional(),
});

/** Caps retries to a share of live traffic so retries cannot amplify an outage. */
export const RetryBudget = z.strictObject({
  percent: z.int().min(0).max(100).optional(),
  minRetriesPerSecond: z.int().min(0).optional(),
  ttl: PositiveDuration.optional(),
});

/** Local token bucket per waypoint replica; over the limit answers 429. */
export const RateLimit = z.strictObject({
  requestsPerSecond: z.int().min(1),
  burst: z.int().min(1).optional(),
});

export const LoadBalancer = z.strictObject({
  algorithm: z.enum(['P2CLeastRequest', 'EWMA', 'RoundRobin']).default('P2CLeastRequest'),
});

/** TrafficPolicy spec. */
export const TrafficPolicySpec = z.strictObject({
  targetRefs: z.array(PolicyTargetRef).min(1).max(16),
  connectionPool: ConnectionPool.optional(),
  outlierDetection: OutlierDetection.optional(),
  retryBudget: RetryBudget.optional(),
  rateLimit: RateLimit.optional(),
  loadBalancer: LoadBalancer.optional(),
}).superRefine((s, ctx) => {
  const seen = new Map<string, number>();
  s.targetRefs.forEach((r, i) => {
    const k = `${r.group}/${r.kind}/${r.name}/${r.sectionName ?? ''}`;
    const prev = seen.get(k);
    if (prev !== undefined) ctx.addIssue({ code: 'custom', path: ['targetRefs', i], message: `duplicates targetRefs.${prev}` });
    else seen.set(k, i);
  });
});
export type TrafficPolicySpec = z.infer<typeof TrafficPolicySpec>;
