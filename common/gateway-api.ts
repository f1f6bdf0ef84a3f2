/**
 * Gateway API v1 HTTPRoute and GRPCRoute specs, the subset a GAMMA mesh uses, as zod
 * schemas: what the controller checks (and reports in status) and what a waypoint's push
 * client checks again before it builds a route table.
 *
 * The schemas carry the constraints the Gateway API CRDs put on these fields (patterns,
 * ranges, list sizes and their CEL rules), fill in the CRD defaults, and reject what Rondo
 * does not implement (ExtensionRef, CORS, ExternalAuth filters; sessionPersistence; parents
 * and backends other than core Services and Gateways) with a reason instead of ignoring it.
 * They have no transforms, so parsing their own output gives the same value again: the
 * controller pushes the parsed form and the proxy re-validates it unchanged.
 *
 * Regular expressions (RegularExpression matches) are ECMAScript with the `u` flag and match
 * the whole value, as Envoy's RE2 full match does; compileFullMatch() is the one compiler
 * both validation and the route table use.
 */
import { z } from 'zod';

/** Issue `params.reason` for features Rondo does not implement (Gateway API `UnsupportedValue`). */
export const UNSUPPORTED = 'UnsupportedValue';

const GATEWAY_GROUP = 'gateway.networking.k8s.io';
const DNS_LABELS = '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*';

// ---- shared types (apis/v1/shared_types.go) ----

const DURATION_RE = /^([0-9]{1,5}(h|m|s|ms)){1,4}$/;
const DURATION_PART = /(\d+)(ms|h|m|s)/g;
const UNIT_MS: Readonly<Record<string, number>> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1 };

/** A Gateway API Duration (GEP-2257): `10s`, `500ms`, `1h30m`; `0s` means disabled where allowed. */
export const Duration = z.string().regex(DURATION_RE, 'must be a Gateway API duration such as 10s, 500ms or 1h30m (1 to 4 parts of up to 5 digits, units h, m, s, ms)');

/** Milliseconds of a Duration; throws on a string that is not one (validate first). */
export function durationMs(d: string): number {
  if (!DURATION_RE.test(d)) throw new RangeError(`not a Gateway API duration: ${JSON.stringify(d)}`);
  let ms = 0;
  for (const m of d.matchAll(DURATION_PART)) ms += Number(m[1]) * (UNIT_MS[m[2] ?? ''] ?? 0);
  return ms;
}

/** A duration that must be more than zero (intervals, timeouts that cannot mean "off"). */
export const PositiveDuration = Duration.refine((d) => durationMs(d) > 0, 'must be more than 0');

const PortNumber = z.int().min(1).max(65535);
const Group = z.string().max(253).regex(new RegExp(`^$|^${DNS_LABELS}$`), 'must be "" (core) or a DNS subdomain such as gateway.networking.k8s.io');
const Kind = z.string().min(1).max(63).regex(/^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$/, 'must be a Kubernetes kind such as Service');
const ObjectName = z.string().min(1).max(253);
const Namespace = z.string().min(1).max(63).regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a namespace name (RFC 1123 label)');
const SectionName = z.string().min(1).max(253).regex(new RegExp(`^${DNS_LABELS}$`), 'must be lower-case letters, digits, - and . (RFC 1123 subdomain)');
/** Route hostname: RFC 1123, optionally `*.`-prefixed, no IPs. */
export const Hostname = z.string().min(1).max(253).regex(new RegExp(`^(\\*\\.)?${DNS_LABELS}$`), 'must be a lower-case DNS name, optionally prefixed with *.');
const PreciseHostname = z.string().min(1).max(253).regex(new RegExp(`^${DNS_LABELS}$`), 'must be a lower-case DNS name');
/** An HTTP header (or query parameter) name: an RFC 7230 token. */
export const HeaderName = z.string().min(1).max(256).regex(/^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/, 'must be an HTTP header name (RFC 7230 token: no spaces, colons or slashes)');

/**
 * Compiles a RegularExpression match value to a whole-value matcher. The pattern is first
 * compiled alone: wrapping an unbalanced pattern such as `a)|(b` could otherwise compile to
 * something else.
 */
export function compileFullMatch(pattern: string): RegExp {
  new RegExp(pattern, 'u');
  return new RegExp(`^(?:${pattern})$`, 'u');
}

/** Why a pattern does not compile, or undefined when it does. */
export function regexProblem(pattern: string): string | undefined {
  try {
    compileFullMatch(pattern);
    return undefined;
  } catch (e) {
    return `not a valid regular expression (${(e as Error).message})`;
  }
}

type Ctx = z.core.$RefinementCtx<unknown>;
function issue(ctx: Ctx, path: PropertyKey[], message: string, unsupported = false): void {
  ctx.addIssue({ code: 'custom', path, message, ...(unsupported ? { params: { reason: UNSUPPORTED } } : {}) });
}

/** Names listed twice in a list keyed by `name` (the CRDs' listType=map). */
function duplicateNames(ctx: Ctx, list: readonly { name: string }[] | undefined, field: string): void {
  const seen = new Set<string>();
  list?.forEach((x, i) => {
    if (seen.has(x.name)) issue(ctx, [field, i, 'name'], `${JSON.stringify(x.name)} is listed twice`);
    seen.add(x.name);
  });
}

// ---- references ----

/** A route's parent: a core Service (GAMMA) or a Gateway. Defaults as the CRD sets them. */
export const ParentReference = z.strictObject({
  group: Group.default(GATEWAY_GROUP),
  kind: Kind.default('Gateway'),
  namespace: Namespace.optional(),
  name: ObjectName,
  sectionName: SectionName.optional(),
  port: PortNumber.optional(),
}).superRefine((r, ctx) => {
  if (r.kind === 'Service' && r.group !== '') {
    issue(ctx, ['group'], `a Service parent needs group "" (the core group); ${r.group === GATEWAY_GROUP ? 'the default is gateway.networking.k8s.io, so set it explicitly' : `got ${JSON.stringify(r.group)}`}`);
  } else if (!(r.kind === 'Service' || (r.kind === 'Gateway' && r.group === GATEWAY_GROUP))) {
    issue(ctx, ['kind'], `parent ${r.group === '' ? '' : `${r.group}/`}${r.kind} is not supported: use a Service (group "") or a Gateway`, true);
  }
});
export type ParentReference = z.infer<typeof ParentReference>;

const backendShape = {
  group: Group.default(''),
  kind: Kind.default('Service'),
  name: ObjectName,
  namespace: Namespace.optional(),
  port: PortNumber.optional(),
};
function checkBackend(r: { group: string; kind: string; port?: number | undefined }, ctx: Ctx): void {
  if (r.group !== '' || r.kind !== 'Service') {
    issue(ctx, ['kind'], `backend ${r.group === '' ? '' : `${r.group}/`}${r.kind} is not supported: only core Services (group "", kind Service) are`, true);
  } else if (r.port === undefined) {
    issue(ctx, ['port'], 'required for a Service backend (the Service port, not the target port)');
  }
}

/** A backend: a core Service and its port (other kinds are not supported). */
export const BackendObjectReference = z.strictObject(backendShape).superRefine(checkBackend);
export type BackendObjectReference = z.infer<typeof BackendObjectReference>;


// ---- filters ----

const HTTPHeader = z.strictObject({ name: HeaderName, value: z.string().min(1).max(4096) });

/** Set/add/remove of headers; each header name (case-insensitively) in one action only. */
export const HTTPHeaderFilter = z.strictObject({
  set: z.array(HTTPHeader).max(16).optional(),
  add: z.array(HTTPHeader).max(16).optional(),
  remove: z.array(HeaderName).max(16).optional(),
}).superRefine((f, ctx) => {
  const seen = new Map<string, string>();
  const see = (name: string, where: PropertyKey[]): void => {
    const k = name.toLowerCase();
    const prev = seen.get(k);
    if (prev !== undefined) issue(ctx, where, `header ${JSON.stringify(name)} already has an action in ${prev}: one action per header name`);
    else seen.set(k, where.join('.'));
  };
  f.set?.forEach((h, i) => see(h.name, ['set', i, 'name']));
  f.add?.forEach((h, i) => see(h.name, ['add', i, 'name']));
  f.remove?.forEach((n, i) => see(n, ['remove', i]));
});
export type HTTPHeaderFilter = z.infer<typeof HTTPHeaderFilter>;

/** Path rewrite or redirect: the whole path, or the matched PathPrefix. */
export const HTTPPathModifier = z.strictObject({
  type: z.enum(['ReplaceFullPath', 'ReplacePrefixMatch']),
  replaceFullPath: z.string().max(1024).optional(),
  replacePrefixMatch: z.string().max(1024).optional(),
}).superRefine((p, ctx) => {
  if (p.type === 'ReplaceFullPath') {
    if (p.replaceFullPath === undefined) issue(ctx, ['replaceFullPath'], 'required when type is ReplaceFullPath');
    else if (!p.replaceFullPath.startsWith('/')) issue(ctx, ['replaceFullPath'], "must start with '/'");
    if (p.replacePrefixMatch !== undefined) issue(ctx, ['replacePrefixMatch'], "only with type ReplacePrefixMatch");
  } else {
    if (p.replacePrefixMatch === undefined) issue(ctx, ['replacePrefixMatch'], 'required when type is ReplacePrefixMatch');
    else if (p.replacePrefixMatch !== '' && !p.replacePrefixMatch.startsWith('/')) issue(ctx, ['replacePrefixMatch'], "must be empty or start with '/'");
    if (p.replaceFullPath !== undefined) issue(ctx, ['replaceFullPath'], 'only with type ReplaceFullPath');
  }
});
export type HTTPPathModifier = z.infer<typeof HTTPPathModifier>;

export const HTTPRequestRedirectFilter = z.strictObject({
  scheme: z.enum(['http', 'https']).optional(),
  hostname: PreciseHostname.optional(),
  path: HTTPPathModifier.optional(),
  port: PortNumber.optional(),
  statusCode: z.literal([301, 302, 303, 307, 308]).default(302),
});
export type HTTPRequestRedirectFilter = z.infer<typeof HTTPRequestRedirectFilter>;

export const HTTPURLRewriteFilter = z.strictObject({
  hostname: PreciseHostname.optional(),
  path: HTTPPathModifier.optional(),
});
export type HTTPURLRewriteFilter = z.infer<typeof HTTPURLRewriteFilter>;

/** Mirror to one backend; a share by `percent` or `fraction` (neither: every request). */
export const HTTPRequestMirrorFilter = z.strictObject({
  backendRef: BackendObjectReference,
  percent: z.int().min(0).max(100).optional(),
  fraction: z.strictObject({ numerator: z.int().min(0), denominator: z.int().min(1).default(100) }).optional(),
}).superRefine((m, ctx) => {
  if (m.percent !== undefined && m.fraction !== undefined) issue(ctx, ['fraction'], 'only one of percent or fraction may be set');
  if (m.fraction !== undefined && m.fraction.numerator > m.fraction.denominator) issue(ctx, ['fraction', 'numerator'], 'must be at most the denominator');
});
export type HTTPRequestMirrorFilter = z.infer<typeof HTTPRequestMirrorFilter>;

const UNSUPPORTED_FILTERS: Readonly<Record<string, string>> = {
  ExtensionRef: 'ExtensionRef filters are not supported: Rondo defines no extension filter kinds',
  CORS: 'CORS filters are not supported yet',
  ExternalAuth: 'ExternalAuth filters are not supported yet',
};

/** Rejects filter types Rondo knows of but does not implement, with their own reason. */
function knownButUnsupported(allowed: readonly string[]): z.ZodType<unknown> {
  return z.unknown().superRefine((v, ctx) => {
    const t = v !== null && typeof v === 'object' ? (v as { type?: unknown }).type : undefined;
    if (typeof t === 'string' && !allowed.includes(t) && UNSUPPORTED_FILTERS[t] !== undefined) issue(ctx, ['type'], UNSUPPORTED_FILTERS[t], true);
  });
}

const reqHeaders = z.strictObject({ type: z.literal('RequestHeaderModifier'), requestHeaderModifier: HTTPHeaderFilter });
const respHeaders = z.strictObject({ type: z.literal('ResponseHeaderModifier'), responseHeaderModifier: HTTPHeaderFilter });
const mirror = z.strictObject({ type: z.literal('RequestMirror'), requestMirror: HTTPRequestMirrorFilter });
const HTTP_FILTER_TYPES = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror', 'RequestRedirect', 'URLRewrite'] as const;
const GRPC_FILTER_TYPES = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror'] as const;

/** One HTTPRoute filter; `type` names the one field that is set. */
export const HTTPRouteFilter = knownButUnsupported(HTTP_FILTER_TYPES).pipe(z.discriminatedUnion('type', [
  reqHeaders,
  respHeaders,
  mirror,
  z.strictObject({ type: z.literal('RequestRedirect'), requestRedirect: HTTPRequestRedirectFilter }),
  z.strictObject({ type: z.literal('URLRewrite'), urlRewrite: HTTPURLRewriteFilter }),
]));
export type HTTPRouteFilter = z.infer<typeof HTTPRouteFilter>;

/** One GRPCRoute filter. */
export const GRPCRouteFilter = knownButUnsupported(GRPC_FILTER_TYPES).pipe(z.discriminatedUnion('type', [reqHeaders, respHeaders, mirror]));
export type GRPCRouteFilter = z.infer<typeof GRPCRouteFilter>;

const ONCE_ONLY = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestRedirect', 'URLRewrite'];

/** The CRDs' list rules for filters: each kind once (mirrors excepted), redirect xor rewrite. */
function checkFilterList(ctx: Ctx, filters: readonly { type: string }[] | undefined, path: PropertyKey[]): void {
  if (filters === undefined) return;
  const first = new Map<string, number>();
  filters.forEach((f, i) => {
    if (ONCE_ONLY.includes(f.type) && first.has(f.type)) issue(ctx, [...path, i, 'type'], `${f.type} filter cannot be repeated (also at ${path.join('.')}.${first.get(f.type)})`);
    if (!first.has(f.type)) first.set(f.type, i);
  });
  if (first.has('RequestRedirect') && first.has('URLRewrite')) issue(ctx, [...path, first.get('URLRewrite') ?? 0, 'type'], 'RequestRedirect and URLRewrite cannot be used together');
}

// ---- HTTPRoute ----

const PATH_CHARS = /^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})+$/;

/** Why an Exact/PathPrefix value is not a clean absolute path, or undefined. */
function pathProblem(v: string): string | undefined {
  if (!v.startsWith('/')) return "must be an absolute path starting with '/'";
  for (const bad of ['//', '/./', '/../', '%2f', '%2F', '#']) if (v.includes(bad)) return `must not contain '${bad}'`;
  for (const bad of ['/..', '/.']) if (v.endsWith(bad)) return `must not end with '${bad}'`;
  if (!PATH_CHARS.test(v)) return "must only contain URL path characters (letters, digits, -._~!$&'()*+,;=:@/ and %XX escapes)";
  return undefined;
}

export const HTTPPathMatch = z.strictObject({
  type: z.enum(['Exact', 'PathPrefix', 'RegularExpression']).default('PathPrefix'),
  value: z.string().max(1024).default('/'),
}).superRefine((p, ctx) => {
  const why = p.type === 'RegularExpression' ? regexProblem(p.value) : pathProblem(p.value);
  if (why !== undefined) issue(ctx, ['value'], why);
});
export type HTTPPathMatch = z.infer<typeof HTTPPathMatch>;

const matchType = z.enum(['Exact', 'RegularExpression']).default('Exact');
function regexIfRegex(m: { type: string; value: string }, ctx: Ctx): void {
  if (m.type === 'RegularExpression') {
    const why = regexProblem(m.value);
    if (why !== undefined) issue(ctx, ['value'], why);
  }
}

export const HTTPHeaderMatch = z.strictObject({ type: matchType, name: HeaderName, value: z.string().min(1).max(4096) }).superRefine(regexIfRegex);
export type HTTPHeaderMatch = z.infer<typeof HTTPHeaderMatch>;
export const HTTPQueryParamMatch = z.strictObject({ type: matchType, name: HeaderName, value: z.string().min(1).max(1024) }).superRefine(regexIfRegex);
export type HTTPQueryParamMatch = z.infer<typeof HTTPQueryParamMatch>;

/** The HTTP methods a match may name (upper case). */
export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'] as const;

/** One match: every condition set must hold (path defaults to PathPrefix `/`). */
export const HTTPRouteMatch = z.strictObject({
  path: HTTPPathMatch.default(() => ({ type: 'PathPrefix' as const, value: '/' })),
  headers: z.array(HTTPHeaderMatch).max(16).optional(),
  queryParams: z.array(HTTPQueryParamMatch).max(16).optional(),
  method: z.enum(HTTP_METHODS).optional(),
}).superRefine((m, ctx) => {
  duplicateNames(ctx, m.headers, 'headers');
  duplicateNames(ctx, m.queryParams, 'queryParams');
});
export type HTTPRouteMatch = z.infer<typeof HTTPRouteMatch>;

const weight = z.int().min(0).max(1_000_000).default(1);

/** A weighted backend with its own filters (weight 0: no traffic; default 1). */
export const HTTPBackendRef = z.strictObject({ ...backendShape, weight, filters: z.array(HTTPRouteFilter).max(16).optional() }).superRefine((b, ctx) => {
  checkBackend(b, ctx);
  checkFilterList(ctx, b.filters, ['filters']);
});
export type HTTPBackendRef = z.infer<typeof HTTPBackendRef>;

/** Timeouts of a rule; `0s` disables one; backendRequest may not exceed request. */
export const HTTPRouteTimeouts = z.strictObject({ request: Duration.optional(), backendRequest: Duration.optional() }).superRefine((t, ctx) => {
  if (t.request === undefined || t.backendRequest === undefined) return;
  const req = durationMs(t.request);
  if (req !== 0 && durationMs(t.backendRequest) > req) issue(ctx, ['backendRequest'], `cannot be longer than the request timeout (${t.request})`);
});
export type HTTPRouteTimeouts = z.infer<typeof HTTPRouteTimeouts>;

/** Retries (GEP-1731): on which codes, how many beyond the first try, base backoff. */
export const HTTPRouteRetry = z.strictObject({
  codes: z.array(z.int().min(400).max(599)).optional(),
  attempts: z.int().min(0).optional(),
  backoff: Duration.optional(),
}).superRefine((r, ctx) => {
  const seen = new Set<number>();
  r.codes?.forEach((c, i) => {
    if (seen.has(c)) issue(ctx, ['codes', i], `${c} is listed twice`);
    seen.add(c);
  });
});
export type HTTPRouteRetry = z.infer<typeof HTTPRouteRetry>;

/** Rejects fields Rondo knows but does not implement before the strict schema sees them. */
function rejectFields(fields: Readonly<Record<string, string>>): z.ZodType<unknown> {
  return z.unknown().superRefine((v, ctx) => {
    if (v === null || typeof v !== 'object') return;
    for (const [f, why] of Object.entries(fields)) if ((v as Record<string, unknown>)[f] !== undefined) issue(ctx, [f], why, true);
  });
}
const NO_SESSION_PERSISTENCE = { sessionPersistence: 'session persistence is not supported' };

function pathModifiersOf(filters: readonly HTTPRouteFilter[] | undefined): { index: number; path: HTTPPathModifier | undefined }[] {
  return (filters ?? []).map((f, index) => ({
    index,
    path: f.type === 'RequestRedirect' ? f.requestRedirect.path : f.type === 'URLRewrite' ? f.urlRewrite.path : undefined,
  }));
}

const httpRouteRuleObject = z.strictObject({
  name: SectionName.optional(),
  matches: z.array(HTTPRouteMatch).max(64).default(() => [{ path: { type: 'PathPrefix' as const, value: '/' } }]),
  filters: z.array(HTTPRouteFilter).max(16).optional(),
  backendRefs: z.array(HTTPBackendRef).max(16).optional(),
  timeouts: HTTPRouteTimeouts.optional(),
  retry: HTTPRouteRetry.optional(),
}).superRefine((r, ctx) => {
  checkFilterList(ctx, r.filters, ['filters']);
  const redirect = r.filters?.findIndex((f) => f.type === 'RequestRedirect') ?? -1;
  if (redirect >= 0 && (r.backendRefs?.length ?? 0) > 0) issue(ctx, ['filters', redirect, 'type'], 'RequestRedirect cannot be used together with backendRefs');
  // ReplacePrefixMatch replaces the matched prefix: there must be exactly one, and a PathPrefix.
  const onePrefix = r.matches.length === 1 && r.matches[0]?.path.type === 'PathPrefix';
  const check = (filters: readonly HTTPRouteFilter[] | undefined, at: PropertyKey[]): void => {
    for (const { index, path } of pathModifiersOf(filters)) {
      if (path?.type === 'ReplacePrefixMatch' && !onePrefix) issue(ctx, [...at, index], 'ReplacePrefixMatch needs the rule to have exactly one match, of type PathPrefix');
    }
  };
  check(r.filters, ['filters']);
  r.backendRefs?.forEach((b, i) => check(b.filters, ['backendRefs', i, 'filters']));
});

/** One HTTPRoute rule: matches (any one suffices), filters, weighted backends, timeouts, retry. */
export const HTTPRouteRule = rejectFields(NO_SESSION_PERSISTENCE).pipe(httpRouteRuleObject);
export type HTTPRouteRule = z.infer<typeof HTTPRouteRule>;

/** ParentRefs must be distinct: refs to one parent set the same optional fields, to different values. */
function checkParentRefs(ctx: Ctx, refs: readonly ParentReference[] | undefined): void {
  const byParent = new Map<string, { i: number; shape: string; section: string }[]>();
  refs?.forEach((r, i) => {
    const key = `${r.group}/${r.kind}/${r.namespace ?? ''}/${r.name}`;
    const shape = `${r.sectionName !== undefined}/${r.port !== undefined}`;
    const section = `${r.sectionName ?? ''}/${r.port ?? ''}`;
    let l = byParent.get(key);
    if (l === undefined) byParent.set(key, (l = []));
    const other = l[0];
    if (other !== undefined && other.shape !== shape) issue(ctx, ['parentRefs', i], `refers to the same parent as parentRefs.${other.i}: both must set the same of sectionName and port`);
    else if (l.some((x) => x.section === section)) issue(ctx, ['parentRefs', i], `duplicates parentRefs.${l.find((x) => x.section === section)?.i}`);
    l.push({ i, shape, section });
  });
}

function checkRules(ctx: Ctx, rules: readonly { name?: string | undefined; matches?: readonly unknown[] | undefined }[]): void {
  const names = new Map<string, number>();
  let matches = 0;
  rules.forEach((r, i) => {
    matches += r.matches?.length ?? 0;
    if (r.name === undefined) return;
    const prev = names.get(r.name);
    if (prev !== undefined) issue(ctx, ['rules', i, 'name'], `rule name ${JSON.stringify(r.name)} is also used by rules.${prev}: names must be unique within the route`);
    else names.set(r.name, i);
  });
  if (matches > 128) issue(ctx, ['rules'], `${matches} matches across all rules: at most 128 are allowed`);
}

const commonRouteSpec = {
  parentRefs: z.array(ParentReference).max(32).optional(),
  hostnames: z.array(Hostname).max(16).optional(),
};

/** HTTPRoute spec (gateway.networking.k8s.io/v1), CRD defaults filled in. */
export const HTTPRouteSpec = z.strictObject({
  ...commonRouteSpec,
  rules: z.array(HTTPRouteRule).min(1).max(16).default(() => [{ matches: [{ path: { type: 'PathPrefix' as const, value: '/' } }] }]),
}).superRefine((s, ctx) => {
  checkParentRefs(ctx, s.parentRefs);
  checkRules(ctx, s.rules);
});
export type HTTPRouteSpec = z.infer<typeof HTTPRouteSpec>;

// ---- GRPCRoute ----

const GRPC_SERVICE = /^\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$/i;
const GRPC_METHOD = /^[A-Za-z_][A-Za-z_0-9]*$/;

/** gRPC service and/or method (`/<service>/<method>`); at least one of them. */
export const GRPCMethodMatch = z.strictObject({
  type: matchType,
  service: z.string().min(1, 'must not be empty: leave it out to match any service').max(1024).optional(),
  method: z.string().min(1, 'must not be empty: leave it out to match any method').max(1024).optional(),
}).superRefine((m, ctx) => {
  if (m.service === undefined && m.method === undefined) issue(ctx, [], 'one or both of service and method must be set');
  for (const f of ['service', 'method'] as const) {
    const v = m[f];
    if (v === undefined) continue;
    if (m.type === 'RegularExpression') {
      const why = regexProblem(v);
      if (why !== undefined) issue(ctx, [f], why);
    } else if (!(f === 'service' ? GRPC_SERVICE : GRPC_METHOD).test(v)) {
      issue(ctx, [f], f === 'service' ? 'must be a dotted gRPC service name such as pkg.v1.Greeter (letters, digits, _)' : 'must be a gRPC method name (letters, digits, _; no /)');
    }
  }
});
export type GRPCMethodMatch = z.infer<typeof GRPCMethodMatch>;

export const GRPCHeaderMatch = HTTPHeaderMatch;
export type GRPCHeaderMatch = HTTPHeaderMatch;

export const GRPCRouteMatch = z.strictObject({
  method: GRPCMethodMatch.optional(),
  headers: z.array(GRPCHeaderMatch).max(16).optional(),
}).superRefine((m, ctx) => duplicateNames(ctx, m.headers, 'headers'));
export type GRPCRouteMatch = z.infer<typeof GRPCRouteMatch>;

export const GRPCBackendRef = z.strictObject({ ...backendShape, weight, filters: z.array(GRPCRouteFilter).max(16).optional() }).superRefine((b, ctx) => {
  checkBackend(b, ctx);
  checkFilterList(ctx, b.filters, ['filters']);
});
export type GRPCBackendRef = z.infer<typeof GRPCBackendRef>;

/** One GRPCRoute rule; no matches: every gRPC request. */
export const GRPCRouteRule = rejectFields(NO_SESSION_PERSISTENCE).pipe(z.strictObject({
  name: SectionName.optional(),
  matches: z.array(GRPCRouteMatch).max(8).optional(),
  filters: z.array(GRPCRouteFilter).max(16).optional(),
  backendRefs: z.array(GRPCBackendRef).max(16).optional(),
}).superRefine((r, ctx) => checkFilterList(ctx, r.filters, ['filters'])));
export type GRPCRouteRule = z.infer<typeof GRPCRouteRule>;

/** GRPCRoute spec (gateway.networking.k8s.io/v1). */
export const GRPCRouteSpec = z.strictObject({
  ...commonRouteSpec,
  rules: z.array(GRPCRouteRule).max(16).default(() => []),
}).superRefine((s, ctx) => {
  checkParentRefs(ctx, s.parentRefs);
  checkRules(ctx, s.rules);
});
export type GRPCRouteSpec = z.infer<typeof GRPCRouteSpec>;

/** The Gateway API `UnsupportedValue` reason when an error is about an unimplemented feature. */
export function unsupportedReason(err: z.ZodError): string | undefined {
  return err.issues.some((i) => (i as { params?: { reason?: unknown } }).params?.reason === UNSUPPORTED) ? UNSUPPORTED : undefined;
}
