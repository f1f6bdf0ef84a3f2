import t from 'tap';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { KIND_INFO } from '../../controller/sources/kubernetes-kinds.ts';
import type { WatchedKind } from '../../controller/sources/types.ts';
import { z } from 'zod';
import { TrafficPolicySpec } from '../../common/traffic-policy.ts';

const DIR = join(import.meta.dirname, '../../daemonset/crds');

type Schema = Record<string, unknown>;
interface Crd {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec: {
    group: string;
    scope: string;
    names: { kind: string; listKind: string; plural: string; singular: string };
    versions: Array<{ name: string; served: boolean; storage: boolean; subresources?: { status?: unknown }; schema: { openAPIV3Schema: Schema } }>;
  };
}

function load(): Map<string, Crd> {
  const out = new Map<string, Crd>();
  for (const f of readdirSync(DIR).filter((n) => n.endsWith('.yaml')).sort()) {
    const crd = parse(readFileSync(join(DIR, f), 'utf8')) as Crd;
    out.set(crd.spec.names.kind, crd);
  }
  return out;
}

/** Structural-schema rules the API server enforces on a CRD (the subset we use). */
function structuralProblems(s: Schema, path: string): string[] {
  const errs: string[] = [];
  const intOrString = s['x-kubernetes-int-or-string'] === true;
  if (typeof s['type'] !== 'string' && !intOrString && s['x-kubernetes-preserve-unknown-fields'] !== true) errs.push(`${path}: no type`);
  const props = s['properties'] as Record<string, Schema> | undefined;
  if (props !== undefined && s['additionalProperties'] !== undefined) errs.push(`${path}: both properties and additionalProperties`);
  if (s['type'] === 'array' && s['items'] === undefined) errs.push(`${path}: array without items`);
  for (const r of (s['required'] as string[] | undefined) ?? []) if (props?.[r] === undefined) errs.push(`${path}: required ${r} not in properties`);
  if (s['default'] !== undefined) errs.push(...validate(s, s['default'], `${path}(default)`));
  for (const [k, v] of Object.entries(props ?? {})) errs.push(...structuralProblems(v, `${path}.${k}`));
  if (typeof s['additionalProperties'] === 'object') errs.push(...structuralProblems(s['additionalProperties'] as Schema, `${path}.*`));
  if (s['items'] !== undefined) errs.push(...structuralProblems(s['items'] as Schema, `${path}[]`));
  return errs;
}

/** Validates a value against an OpenAPI v3 (CRD subset) schema; unknown fields are errors, as with strict field validation. */
function validate(s: Schema, v: unknown, path: string): string[] {
  if (s['x-kubernetes-int-or-string'] === true) {
    if (Number.isInteger(v)) return [];
    if (typeof v !== 'string') return [`${path}: must be an integer or a string`];
    return typeof s['pattern'] === 'string' && !new RegExp(s['pattern']).test(v) ? [`${path}: does not match ${s['pattern']}`] : [];
  }
  const type = s['type'];
  const errs: string[] = [];
  const actual = Array.isArray(v) ? 'array' : v === null ? 'null' : Number.isInteger(v) ? 'integer' : typeof v;
  if (type !== actual && !(type === 'number' && actual === 'integer')) return [`${path}: must be ${String(type)}, got ${actual}`];
  if (Array.isArray(s['enum']) && !s['enum'].includes(v)) errs.push(`${path}: must be one of ${s['enum'].join(', ')}`);
  if (typeof v === 'string') {
    if (typeof s['pattern'] === 'string' && !new RegExp(s['pattern']).test(v)) errs.push(`${path}: does not match ${s['pattern']}`);
    if (typeof s['minLength'] === 'number' && v.length < s['minLength']) errs.push(`${path}: shorter than ${s['minLength']}`);
    if (typeof s['maxLength'] === 'number' && v.length > s['maxLength']) errs.push(`${path}: longer than ${s['maxLength']}`);
  }
  if (typeof v === 'number') {
    if (typeof s['minimum'] === 'number' && v < s['minimum']) errs.push(`${path}: below ${s['minimum']}`);
    if (typeof s['maximum'] === 'number' && v > s['maximum']) errs.push(`${path}: above ${s['maximum']}`);
  }
  if (Array.isArray(v)) {
    if (typeof s['minItems'] === 'number' && v.length < s['minItems']) errs.push(`${path}: fewer than ${s['minItems']} items`);
    if (typeof s['maxItems'] === 'number' && v.length > s['maxItems']) errs.push(`${path}: more than ${s['maxItems']} items`);
    v.forEach((x, i) => errs.push(...validate(s['items'] as Schema, x, `${path}[${i}]`)));
  }
  if (actual === 'object') {
    const o = v as Record<string, unknown>;
    const props = s['properties'] as Record<string, Schema> | undefined;
    for (const r of (s['required'] as string[] | undefined) ?? []) if (o[r] === undefined) errs.push(`${path}.${r}: required`);
    if (typeof s['maxProperties'] === 'number' && Object.keys(o).length > s['maxProperties']) errs.push(`${path}: too many properties`);
    for (const [k, x] of Object.entries(o)) {
      const sub = props?.[k] ?? (typeof s['additionalProperties'] === 'object' ? (s['additionalProperties'] as Schema) : undefined);
      if (sub !== undefined) errs.push(...validate(sub, x, `${path}.${k}`));
      else if (props !== undefined || s['additionalProperties'] === false) errs.push(`${path}.${k}: unknown field`);
    }
  }
  return errs;
}

const crds = load();

function schemaOf(kind: string): Schema {
  const s = crds.get(kind)?.spec.versions[0]?.schema.openAPIV3Schema;
  if (s === undefined) throw new Error(`no CRD for ${kind}`);
  return s;
}

function check(kind: string, spec: unknown): string[] {
  const obj = { apiVersion: KIND_INFO[kind as WatchedKind].apiVersion, kind, metadata: { name: 'x', namespace: 'demo' }, spec };
  return validate(schemaOf(kind), obj, kind);
}

t.test('one CRD per Rondo kind, each a well-formed apiextensions.k8s.io/v1 CRD', (t) => {
  t.same([...crds.keys()].sort(), ['AuthorizationPolicy', 'PeerAuthentication', 'TrafficPolicy']);
  for (const [kind, crd] of crds) {
    t.equal(crd.apiVersion, 'apiextensions.k8s.io/v1', kind);
    t.equal(crd.kind, 'CustomResourceDefinition', kind);
    t.equal(crd.metadata.name, `${crd.spec.names.plural}.${crd.spec.group}`, `${kind}: name is <plural>.<group>`);
    t.equal(crd.spec.scope, 'Namespaced', kind);
    t.equal(crd.spec.names.listKind, `${kind}List`, kind);
    t.equal(crd.spec.names.singular, kind.toLowerCase(), kind);
    t.equal(crd.spec.versions.filter((v) => v.storage).length, 1, `${kind}: exactly one storage version`);
    const v = crd.spec.versions[0]!;
    t.ok(v.served, `${kind}: served`);
    t.ok(v.subresources?.status !== undefined, `${kind}: status subresource`);
    // The source watches exactly where the CRD makes the API server serve the kind.
    t.equal(`/apis/${crd.spec.group}/${v.name}/${crd.spec.names.plural}`, KIND_INFO[kind as WatchedKind].path, `${kind}: served at the path the source watches`);
    t.same(structuralProblems(v.schema.openAPIV3Schema, kind), [], `${kind}: structural schema`);
    const cond = (((v.schema.openAPIV3Schema['properties'] as Record<string, Schema>)['status']?.['properties'] as Record<string, Schema>)['conditions']);
    t.equal(cond?.['x-kubernetes-list-type'], 'map', `${kind}: conditions keyed by type`);
  }
  t.end();
});

t.test('AuthorizationPolicy: Istio-shaped policies validate, mistakes are named', (t) => {
  t.same(check('AuthorizationPolicy', {
    selector: { matchLabels: { app: 'ratings' } },
    action: 'ALLOW',
    rules: [{
      from: [{ source: { principals: ['cluster.local/ns/demo/sa/web'], namespaces: ['demo'], notIpBlocks: ['10.244.9.0/24'] } }],
      to: [{ operation: { ports: ['8080', 9090], methods: ['GET'], paths: ['/api/*'] } }],
    }],
  }), []);
  t.same(check('AuthorizationPolicy', { action: 'DENY', rules: [{ from: [{ source: { ipBlocks: ['10.0.0.0/8'] } }] }] }), []);
  t.same(check('AuthorizationPolicy', {}), [], 'empty spec: ALLOW nothing (deny all)');
  t.match(check('AuthorizationPolicy', { action: 'PERMIT' }), [/spec\.action: must be one of ALLOW, DENY, AUDIT/]);
  t.match(check('AuthorizationPolicy', { rules: [{ to: [{ operation: { ports: ['http'] } }] }] }), [/ports\[0\]: does not match/]);
  t.match(check('AuthorizationPolicy', { rules: [{ from: [{ principals: ['x'] }] }] }), [/from\[0\]\.source: required/, /from\[0\]\.principals: unknown field/]);
  t.match(check('AuthorizationPolicy', { selector: { matchLabels: { app: 1 } } }), [/matchLabels\.app: must be string/]);
  t.end();
});

t.test('PeerAuthentication: STRICT or PERMISSIVE only, mtls required', (t) => {
  t.same(check('PeerAuthentication', { mtls: { mode: 'STRICT' } }), []);
  t.same(check('PeerAuthentication', { selector: { matchLabels: { app: 'legacy' } }, mtls: { mode: 'PERMISSIVE' } }), []);
  t.match(check('PeerAuthentication', { mtls: { mode: 'DISABLE' } }), [/mtls\.mode: must be one of STRICT, PERMISSIVE/]);
  t.match(check('PeerAuthentication', {}), [/spec\.mtls: required/]);
  t.end();
});

t.test('TrafficPolicy: targetRefs plus resilience settings, bad values rejected with the field', (t) => {
  t.same(check('TrafficPolicy', {
    targetRefs: [{ group: '', kind: 'Service', name: 'ratings' }, { group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', name: 'r', sectionName: 'api' }],
    connectionPool: { maxConnections: 100, maxPendingRequests: 50, maxRequestsPerConnection: 0, connectTimeout: '2s', idleTimeout: '1m30s' },
    outlierDetection: { consecutiveFailures: 5, interval: '10s', baseEjectionTime: '30s', maxEjectionPercent: 50 },
    retryBudget: { percent: 20, minRetriesPerSecond: 10, ttl: '10s' },
    rateLimit: { requestsPerSecond: 100, burst: 200 },
    loadBalancer: { algorithm: 'EWMA' },
  }), []);
  t.match(check('TrafficPolicy', { targetRefs: [] }), [/targetRefs: fewer than 1 items/]);
  t.match(check('TrafficPolicy', { loadBalancer: {} }), [/spec\.targetRefs: required/]);
  const ref = [{ group: '', kind: 'Service', name: 'web' }];
  t.match(check('TrafficPolicy', { targetRefs: ref, outlierDetection: { maxEjectionPercent: 150 } }), [/maxEjectionPercent: above 100/]);
  t.match(check('TrafficPolicy', { targetRefs: ref, connectionPool: { connectTimeout: '5 seconds' } }), [/connectTimeout: does not match/]);
  t.match(check('TrafficPolicy', { targetRefs: ref, loadBalancer: { algorithm: 'Random' } }), [/algorithm: must be one of/]);
  t.match(check('TrafficPolicy', { targetRefs: [{ group: '', kind: 'Deployment', name: 'web' }] }), [/kind: must be one of Service, HTTPRoute, GRPCRoute/]);
  t.match(check('TrafficPolicy', { targetRefs: ref, rateLimit: { burst: 1 } }), [/rateLimit\.requestsPerSecond: required/]);
  t.end();
});

t.test('the walker itself catches non-structural schemas', (t) => {
  t.match(structuralProblems({ type: 'object', properties: { a: { description: 'no type' }, b: { type: 'array' } }, required: ['c'] }, 'x'),
    [/required c not in properties/, /x\.a: no type/, /x\.b: array without items/]);
  t.same(structuralProblems({ type: 'string', enum: ['A'], default: 'B' }, 'x'), ['x(default): must be one of A']);
  t.end();
});

/** Field names of a zod schema, unwrapping optional/default/array/pipe layers; undefined for leaves. */
function zodFields(s: z.ZodType): Map<string, z.ZodType> | undefined {
  if (s instanceof z.ZodOptional || s instanceof z.ZodDefault) return zodFields(s.unwrap() as z.ZodType);
  if (s instanceof z.ZodArray) return zodFields(s.element as z.ZodType);
  if (s instanceof z.ZodPipe) return zodFields(s.out as z.ZodType);
  if (s instanceof z.ZodObject) return new Map(Object.entries(s.shape));
  return undefined;
}
function crdFields(s: Schema): Map<string, Schema> | undefined {
  const inner = s['type'] === 'array' ? (s['items'] as Schema) : s;
  const props = inner['properties'] as Record<string, Schema> | undefined;
  return props === undefined ? undefined : new Map(Object.entries(props));
}
function fieldDiff(crd: Schema, zs: z.ZodType, path: string): string[] {
  const a = crdFields(crd);
  const b = zodFields(zs);
  if (a === undefined || b === undefined) return a === b ? [] : [`${path}: ${a === undefined ? 'leaf in the CRD' : 'leaf in the schema'}`];
  const out: string[] = [];
  for (const k of a.keys()) if (!b.has(k)) out.push(`${path}.${k}: in the CRD only`);
  for (const k of b.keys()) if (!a.has(k)) out.push(`${path}.${k}: in the schema only`);
  for (const [k, v] of a) { const w = b.get(k); if (w !== undefined) out.push(...fieldDiff(v, w, `${path}.${k}`)); }
  return out;
}

t.test('TrafficPolicy: the CRD and the schema the controller and waypoint validate with have the same fields and agree on values', (t) => {
  const spec = (schemaOf('TrafficPolicy')['properties'] as Record<string, Schema>)['spec'] as Schema;
  t.same(fieldDiff(spec, TrafficPolicySpec, 'spec'), [], 'same field tree');
  const ref = [{ group: '', kind: 'Service', name: 'web' }];
  const samples: unknown[] = [
    { targetRefs: ref, connectionPool: { maxConnections: 100, maxPendingRequests: 0, maxRequestsPerConnection: 0, connectTimeout: '2s', idleTimeout: '0s' } },
    { targetRefs: ref, outlierDetection: { consecutiveFailures: 5, interval: '10s', baseEjectionTime: '30s', maxEjectionPercent: 100 } },
    { targetRefs: ref, retryBudget: { percent: 20, minRetriesPerSecond: 0, ttl: '10s' }, rateLimit: { requestsPerSecond: 1 }, loadBalancer: { algorithm: 'RoundRobin' } },
    { targetRefs: [] }, { loadBalancer: {} }, { targetRefs: ref, outlierDetection: { maxEjectionPercent: 101 } },
    { targetRefs: ref, connectionPool: { maxConnections: 0 } }, { targetRefs: ref, connectionPool: { idleTimeout: '1.5s' } },
    { targetRefs: ref, rateLimit: { burst: 2 } }, { targetRefs: ref, rateLimit: { requestsPerSecond: 0 } },
    { targetRefs: ref, loadBalancer: { algorithm: 'Random' } }, { targetRefs: [{ group: '', kind: 'Pod', name: 'x' }] },
    { targetRefs: ref, retryBudget: { percent: -1 } }, { targetRefs: ref, extra: 1 },
  ];
  for (const s of samples) {
    const crdOk = check('TrafficPolicy', s).length === 0;
    t.equal(TrafficPolicySpec.safeParse(s).success, crdOk, `${JSON.stringify(s)}: ${crdOk ? 'accepted' : 'rejected'} by both`);
  }
  // Rules only CEL can state (the walker above does not run CEL): the schema enforces them,
  // the CRD must carry them too.
  t.notOk(TrafficPolicySpec.safeParse({ targetRefs: [{ group: '', kind: 'HTTPRoute', name: 'r' }] }).success, 'a route target needs the Gateway API group');
  t.notOk(TrafficPolicySpec.safeParse({ targetRefs: ref, outlierDetection: { interval: '0s' } }).success, 'a zero interval');
  const props = spec['properties'] as Record<string, Schema>;
  const sub = (o: string, f: string): Schema => ((props[o]?.['properties'] as Record<string, Schema>)[f]) as Schema;
  t.match((props['targetRefs']?.['items'] as Schema)['x-kubernetes-validations'], [{ rule: /self\.kind == 'Service' \? self\.group == ''/ }]);
  for (const [o, f] of [['connectionPool', 'connectTimeout'], ['outlierDetection', 'interval'], ['outlierDetection', 'baseEjectionTime'], ['retryBudget', 'ttl']] as const) {
    t.match(sub(o, f)['x-kubernetes-validations'], [{ rule: "duration(self) > duration('0s')" }], `${o}.${f} must be more than 0 in the CRD too`);
  }
  t.end();
});
