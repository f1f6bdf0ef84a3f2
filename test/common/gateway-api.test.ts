import t from 'tap';
import { GRPCRouteSpec, HTTPRouteSpec, compileFullMatch, durationMs, regexProblem, unsupportedReason } from '../../common/gateway-api.ts';
import { describeZodError } from '../../common/wire.ts';

const svc = { group: '', kind: 'Service', name: 'web' };

/** The reason a spec is rejected, or 'ok'. */
function http(spec: unknown): string {
  const r = HTTPRouteSpec.safeParse(spec);
  return r.success ? 'ok' : describeZodError(r.error);
}
function grpc(spec: unknown): string {
  const r = GRPCRouteSpec.safeParse(spec);
  return r.success ? 'ok' : describeZodError(r.error);
}
const rule = (r: Record<string, unknown>): unknown => ({ parentRefs: [svc], rules: [r] });
const backend = { name: 'web', port: 80 };

t.test('durations: GEP-2257 strings parse to milliseconds, anything else is rejected', (t) => {
  t.same(['10s', '500ms', '1h30m', '1m1ms', '0s', '99999h'].map(durationMs), [10_000, 500, 5_400_000, 60_001, 0, 99999 * 3_600_000]);
  for (const bad of ['10', '1.5s', '1d', '-1s', '123456s', '1h1m1s1ms1h', '10 s', '']) t.throws(() => durationMs(bad), RangeError, bad);
  t.match(http(rule({ timeouts: { request: '5 seconds' } })), /rules\.0\.timeouts\.request: must be a Gateway API duration such as 10s/);
  t.end();
});

t.test('a minimal GAMMA route gets the CRD defaults; parsing the result again gives the same value', (t) => {
  const r = HTTPRouteSpec.parse({ parentRefs: [svc], rules: [{ backendRefs: [backend] }] });
  t.same(r, {
    parentRefs: [{ group: '', kind: 'Service', name: 'web' }],
    rules: [{ matches: [{ path: { type: 'PathPrefix', value: '/' } }], backendRefs: [{ group: '', kind: 'Service', name: 'web', port: 80, weight: 1 }] }],
  });
  t.same(HTTPRouteSpec.parse(r), r, 'idempotent: the proxy re-validates what the controller pushed');
  t.same(HTTPRouteSpec.parse({}).rules, [{ matches: [{ path: { type: 'PathPrefix', value: '/' } }] }], 'no rules: one rule matching every request');
  const full = {
    parentRefs: [{ ...svc, port: 8080 }, { ...svc, namespace: 'other', name: 'api', sectionName: 'http' }, { name: 'wp' }],
    hostnames: ['web.demo.svc.cluster.local', '*.example.com'],
    rules: [{
      name: 'api',
      matches: [{ path: { type: 'Exact', value: '/api' }, method: 'POST', headers: [{ name: 'X-Env', value: 'canary' }, { type: 'RegularExpression', name: 'x-user', value: 'u-\\d+' }], queryParams: [{ name: 'debug', value: '1' }] }],
      filters: [
        { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-a', value: '1' }], add: [{ name: 'x-b', value: '2' }], remove: ['x-c'] } },
        { type: 'ResponseHeaderModifier', responseHeaderModifier: { remove: ['server'] } },
        { type: 'RequestMirror', requestMirror: { backendRef: { name: 'shadow', port: 80 }, fraction: { numerator: 1 } } },
        { type: 'RequestMirror', requestMirror: { backendRef: { name: 'shadow2', port: 80 }, percent: 5 } },
        { type: 'URLRewrite', urlRewrite: { hostname: 'api.internal', path: { type: 'ReplaceFullPath', replaceFullPath: '/v2/api' } } },
      ],
      backendRefs: [{ ...backend, weight: 90 }, { name: 'web-v2', namespace: 'canary', port: 80, weight: 10, filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-v', value: '2' }] } }] }],
      timeouts: { request: '10s', backendRequest: '2s' },
      retry: { codes: [502, 503], attempts: 3, backoff: '100ms' },
    }, {
      matches: [{ path: { type: 'PathPrefix', value: '/old' } }],
      filters: [{ type: 'RequestRedirect', requestRedirect: { scheme: 'https', hostname: 'new.example.com', port: 8443, path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' }, statusCode: 301 } }],
    }],
  };
  const p = HTTPRouteSpec.parse(full);
  t.same(p.parentRefs?.[2], { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'wp' }, 'a parentRef defaults to a Gateway');
  t.same(p.rules[0]?.filters?.[2], { type: 'RequestMirror', requestMirror: { backendRef: { group: '', kind: 'Service', name: 'shadow', port: 80 }, fraction: { numerator: 1, denominator: 100 } } });
  t.equal(p.rules[0]?.matches[0]?.headers?.[0]?.type, 'Exact', 'header match type defaults to Exact');
  t.same(HTTPRouteSpec.parse(p), p);
  t.end();
});

t.test('paths: Exact and PathPrefix values are clean absolute paths; regexes must compile', (t) => {
  const path = (p: unknown): string => http(rule({ matches: [{ path: p }] }));
  t.equal(path({ type: 'Exact', value: '/a/b' }), 'ok');
  t.equal(path({ value: '/a%20b/~x' }), 'ok');
  t.match(path({ type: 'PathPrefix', value: 'api' }), /rules\.0\.matches\.0\.path\.value: must be an absolute path starting with '\/'/);
  t.match(path({ value: '/a//b' }), /must not contain '\/\/'/);
  t.match(path({ type: 'Exact', value: '/a/./b' }), /must not contain '\/\.\/'/);
  t.match(path({ value: '/a/../b' }), /must not contain '\/\.\.\/'/);
  t.match(path({ value: '/a%2Fb' }), /must not contain '%2F'/);
  t.match(path({ value: '/a#b' }), /must not contain '#'/);
  t.match(path({ value: '/a/..' }), /must not end with '\/\.\.'/);
  t.match(path({ value: '/a/.' }), /must not end with '\/\.'/);
  t.match(path({ value: '/a b' }), /must only contain URL path characters/);
  t.match(path({ value: '/a%zz' }), /must only contain URL path characters/);
  t.match(path({ type: 'Prefix', value: '/' }), /path\.type: Invalid option: expected one of "Exact"\|"PathPrefix"\|"RegularExpression"/);
  t.equal(path({ type: 'RegularExpression', value: '/users/\\d+(/.*)?' }), 'ok', 'a regex need not be a clean path');
  t.match(path({ type: 'RegularExpression', value: '/users/(\\d+' }), /path\.value: not a valid regular expression \(.*Unterminated group/);
  t.match(path({ value: `/${'a'.repeat(1024)}` }), /path\.value: Too big/);
  t.end();
});

t.test('headers, query params and methods', (t) => {
  const m = (x: Record<string, unknown>): string => http(rule({ matches: [x] }));
  t.match(m({ headers: [{ name: 'x y', value: 'v' }] }), /headers\.0\.name: must be an HTTP header name/);
  t.match(m({ headers: [{ name: ':authority', value: 'v' }] }), /headers\.0\.name: must be an HTTP header name/, 'pseudo-headers are not matchable');
  t.match(m({ headers: [{ name: 'x', value: '' }] }), /headers\.0\.value: Too small/);
  t.match(m({ headers: [{ name: 'x', value: 'a' }, { name: 'x', value: 'b' }] }), /headers\.1\.name: "x" is listed twice/);
  t.match(m({ headers: [{ type: 'RegularExpression', name: 'x', value: '[' }] }), /headers\.0\.value: not a valid regular expression/);
  t.match(m({ headers: [{ type: 'Prefix', name: 'x', value: 'a' }] }), /headers\.0\.type: Invalid option/);
  t.match(m({ queryParams: [{ name: 'q', value: 'a' }, { name: 'q', value: 'b' }] }), /queryParams\.1\.name: "q" is listed twice/);
  t.match(m({ queryParams: [{ type: 'RegularExpression', name: 'q', value: '(?<' }] }), /queryParams\.0\.value: not a valid regular expression/);
  t.match(m({ method: 'get' }), /matches\.0\.method: Invalid option: expected one of "GET"/);
  t.equal(m({ method: 'PATCH' }), 'ok');
  t.match(m({ headers: Array.from({ length: 17 }, (_, i) => ({ name: `h${i}`, value: 'v' })) }), /headers: Too big: expected array to have <=16 items/);
  t.end();
});

t.test('filters: one field per type, repeats and combinations the CRD forbids, unsupported kinds named', (t) => {
  const f = (filters: unknown[], extra: Record<string, unknown> = {}): string => http(rule({ filters, ...extra }));
  t.match(f([{ type: 'RequestHeaderModifier', requestMirror: { backendRef: backend } }]), /filters\.0\.requestHeaderModifier: Invalid input.*; rules\.0\.filters\.0: Unrecognized key: "requestMirror"/);
  t.match(f([{ type: 'Rewrite' }]), /filters\.0\.type: Invalid discriminator value/);
  t.match(f([{ type: 'RequestHeaderModifier', requestHeaderModifier: {} }, { type: 'RequestHeaderModifier', requestHeaderModifier: {} }]), /filters\.1\.type: RequestHeaderModifier filter cannot be repeated/);
  t.equal(f([{ type: 'RequestMirror', requestMirror: { backendRef: backend } }, { type: 'RequestMirror', requestMirror: { backendRef: backend } }]), 'ok', 'mirrors may repeat');
  t.match(f([{ type: 'RequestRedirect', requestRedirect: {} }, { type: 'URLRewrite', urlRewrite: {} }]), /filters\.1\.type: RequestRedirect and URLRewrite cannot be used together/);
  t.match(f([{ type: 'RequestRedirect', requestRedirect: {} }], { backendRefs: [backend] }), /filters\.0\.type: RequestRedirect cannot be used together with backendRefs/);
  t.match(f([{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'X-A', value: '1' }], remove: ['x-a'] } }]), /requestHeaderModifier\.remove\.0: header "x-a" already has an action in set\.0\.name/);
  t.match(f([{ type: 'RequestRedirect', requestRedirect: { statusCode: 305 } }]), /requestRedirect\.statusCode: Invalid option: expected one of 301\|302\|303\|307\|308/);
  t.same(HTTPRouteSpec.parse(rule({ filters: [{ type: 'RequestRedirect', requestRedirect: {} }] })).rules[0]?.filters, [{ type: 'RequestRedirect', requestRedirect: { statusCode: 302 } }], 'redirect code defaults to 302');
  t.match(f([{ type: 'RequestRedirect', requestRedirect: { scheme: 'ftp' } }]), /requestRedirect\.scheme: Invalid option/);
  t.match(f([{ type: 'RequestRedirect', requestRedirect: { hostname: '*.example.com' } }]), /requestRedirect\.hostname: must be a lower-case DNS name/);
  t.match(f([{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplaceFullPath' } } }]), /urlRewrite\.path\.replaceFullPath: required when type is ReplaceFullPath/);
  t.match(f([{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplaceFullPath', replaceFullPath: '/a', replacePrefixMatch: '/b' } } }]), /urlRewrite\.path\.replacePrefixMatch: only with type ReplacePrefixMatch/);
  t.match(f([{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: 'b' } } }]), /replacePrefixMatch: must be empty or start with '\/'/);
  t.match(f([{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/b' } } }], { matches: [{ path: { type: 'Exact', value: '/a' } }] }),
    /filters\.0: ReplacePrefixMatch needs the rule to have exactly one match, of type PathPrefix/);
  t.equal(f([{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '' } } }], { matches: [{ path: { value: '/a' } }] }), 'ok');
  t.match(http(rule({ matches: [{ path: { value: '/a' } }, { path: { value: '/b' } }], backendRefs: [{ ...backend, filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/' } } }] }] })),
    /backendRefs\.0\.filters\.0: ReplacePrefixMatch needs/, 'per-backend filters are held to the same rule');
  t.match(f([{ type: 'RequestMirror', requestMirror: { backendRef: backend, percent: 10, fraction: { numerator: 1 } } }]), /requestMirror\.fraction: only one of percent or fraction may be set/);
  t.match(f([{ type: 'RequestMirror', requestMirror: { backendRef: backend, fraction: { numerator: 3, denominator: 2 } } }]), /fraction\.numerator: must be at most the denominator/);
  t.match(f([{ type: 'RequestMirror', requestMirror: { backendRef: backend, percent: 101 } }]), /requestMirror\.percent: Too big/);
  t.match(f([{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'shadow' } } }]), /requestMirror\.backendRef\.port: required for a Service backend/);
  for (const [type, why] of [['ExtensionRef', /ExtensionRef filters are not supported/], ['CORS', /CORS filters are not supported/], ['ExternalAuth', /ExternalAuth filters are not supported/]] as const) {
    const r = HTTPRouteSpec.safeParse(rule({ filters: [{ type, extensionRef: { group: 'example.com', kind: 'Filter', name: 'f' } }] }));
    t.match(r.success ? 'ok' : describeZodError(r.error), new RegExp(`rules\\.0\\.filters\\.0\\.type: ${why.source}`), type);
    t.equal(r.success ? undefined : unsupportedReason(r.error), 'UnsupportedValue', `${type}: status reason UnsupportedValue`);
  }
  t.end();
});

t.test('backends, timeouts, retries, rule names and the route-wide limits', (t) => {
  t.match(http(rule({ backendRefs: [{ name: 'web' }] })), /backendRefs\.0\.port: required for a Service backend/);
  t.match(http(rule({ backendRefs: [{ ...backend, weight: 1_000_001 }] })), /backendRefs\.0\.weight: Too big/);
  t.match(http(rule({ backendRefs: [{ ...backend, weight: -1 }] })), /backendRefs\.0\.weight: Too small/);
  t.equal(http(rule({ backendRefs: [{ ...backend, weight: 0 }] })), 'ok', 'weight 0: no traffic, still valid');
  t.match(http(rule({ backendRefs: [{ group: 'multicluster.x-k8s.io', kind: 'ServiceImport', name: 'web', port: 80 }] })), /backendRefs\.0\.kind: backend multicluster\.x-k8s\.io\/ServiceImport is not supported/);
  t.match(http(rule({ backendRefs: [{ ...backend, namespace: 'Not_A_Namespace' }] })), /backendRefs\.0\.namespace: must be a namespace name/);
  t.match(http(rule({ timeouts: { request: '1s', backendRequest: '2s' } })), /timeouts\.backendRequest: cannot be longer than the request timeout \(1s\)/);
  t.equal(http(rule({ timeouts: { request: '0s', backendRequest: '2s' } })), 'ok', 'a disabled request timeout bounds nothing');
  t.match(http(rule({ timeouts: { idle: '1s' } })), /timeouts: Unrecognized key: "idle"/);
  t.match(http(rule({ retry: { codes: [503, 200, 503] } })), /retry\.codes\.1: Too small/);
  t.match(http(rule({ retry: { codes: [503, 503] } })), /retry\.codes\.1: 503 is listed twice/);
  t.match(http(rule({ retry: { attempts: -1 } })), /retry\.attempts: Too small/);
  t.match(http(rule({ retry: { backoff: 'fast' } })), /retry\.backoff: must be a Gateway API duration/);
  t.match(http(rule({ sessionPersistence: { sessionName: 's' } })), /rules\.0\.sessionPersistence: session persistence is not supported/);
  t.match(http({ rules: [{ name: 'a' }, { name: 'a' }] }), /rules\.1\.name: rule name "a" is also used by rules\.0/);
  t.match(http({ rules: [{ name: 'Bad_Name' }] }), /rules\.0\.name: must be lower-case letters/);
  t.match(http({ rules: [] }), /rules: Too small/);
  t.match(http({ rules: Array.from({ length: 3 }, () => ({ matches: Array.from({ length: 50 }, () => ({})) })) }), /rules: 150 matches across all rules: at most 128/);
  t.match(http({ hostnames: ['10.0.0.1x', 'Web.example.com'] }), /hostnames\.1: must be a lower-case DNS name/);
  t.match(http({ rules: [{ matches: [{}], fiters: [] }] }), /rules\.0: Unrecognized key: "fiters"/, 'a typo is an error, not an ignored field');
  t.end();
});

t.test('parentRefs: Service or Gateway, core group for a Service, distinct per parent', (t) => {
  t.match(http({ parentRefs: [{ kind: 'Service', name: 'web' }] }), /parentRefs\.0\.group: a Service parent needs group "" \(the core group\); the default is gateway\.networking\.k8s\.io/);
  const r = HTTPRouteSpec.safeParse({ parentRefs: [{ group: 'networking.istio.io', kind: 'ServiceEntry', name: 'x' }] });
  t.match(r.success ? 'ok' : describeZodError(r.error), /parentRefs\.0\.kind: parent networking\.istio\.io\/ServiceEntry is not supported/);
  t.equal(r.success ? undefined : unsupportedReason(r.error), 'UnsupportedValue');
  t.match(http({ parentRefs: [svc, svc] }), /parentRefs\.1: duplicates parentRefs\.0/);
  t.match(http({ parentRefs: [svc, { ...svc, port: 80 }] }), /parentRefs\.1: refers to the same parent as parentRefs\.0: both must set the same of sectionName and port/);
  t.equal(http({ parentRefs: [{ ...svc, port: 80 }, { ...svc, port: 81 }, { ...svc, name: 'api' }, { ...svc, namespace: 'other' }] }), 'ok');
  t.match(http({ parentRefs: [{ ...svc, port: 0 }] }), /parentRefs\.0\.port: Too small/);
  t.end();
});

t.test('GRPCRoute: method matches, header matches, filters', (t) => {
  const m = (x: unknown): string => grpc({ parentRefs: [svc], rules: [{ matches: [x], backendRefs: [backend] }] });
  t.equal(m({ method: { service: 'helloworld.Greeter', method: 'SayHello' } }), 'ok');
  t.equal(m({ method: { service: '.pkg.v1.Svc' } }), 'ok');
  t.equal(m({ method: { method: 'Get' } }), 'ok');
  t.match(m({ method: {} }), /matches\.0\.method: one or both of service and method must be set/);
  t.match(m({ method: { service: 'pkg/Svc' } }), /method\.service: must be a dotted gRPC service name/);
  t.match(m({ method: { service: 'pkg.Svc', method: 'Say/Hello' } }), /method\.method: must be a gRPC method name/);
  t.match(m({ method: { service: '' } }), /method\.service: must not be empty: leave it out to match any service/);
  t.equal(m({ method: { type: 'RegularExpression', service: 'pkg\\.v[12]\\..*', method: 'Get.*' } }), 'ok');
  t.match(m({ method: { type: 'RegularExpression', method: '*' } }), /method\.method: not a valid regular expression/);
  t.match(m({ headers: [{ name: 'x', value: 'a' }, { name: 'x', value: 'b' }] }), /headers\.1\.name: "x" is listed twice/);
  t.match(grpc({ rules: [{ matches: Array.from({ length: 9 }, () => ({})) }] }), /rules\.0\.matches: Too big: expected array to have <=8 items/);
  t.match(grpc({ rules: [{ filters: [{ type: 'RequestRedirect', requestRedirect: {} }] }] }), /filters\.0\.type: Invalid discriminator value/, 'no redirects for gRPC');
  t.match(grpc({ rules: [{ filters: [{ type: 'ExtensionRef', extensionRef: { kind: 'F', name: 'f' } }] }] }), /filters\.0\.type: ExtensionRef filters are not supported/);
  t.match(grpc({ rules: [{ timeouts: { request: '1s' } }] }), /rules\.0: Unrecognized key: "timeouts"/, 'GRPCRoute v1 has no timeouts');
  const p = GRPCRouteSpec.parse({ parentRefs: [svc], rules: [{ matches: [{ method: { service: 's', method: 'm' } }], backendRefs: [backend] }] });
  t.same(p.rules[0]?.matches?.[0]?.method, { type: 'Exact', service: 's', method: 'm' });
  t.same(GRPCRouteSpec.parse(p), p, 'idempotent');
  t.same(GRPCRouteSpec.parse({}).rules, []);
  t.end();
});

t.test('regexes match the whole value; a pattern that only compiles once wrapped is rejected', (t) => {
  const re = compileFullMatch('/v[0-9]+');
  t.ok(re.test('/v12'));
  t.notOk(re.test('/v12/x'), 'anchored at the end');
  t.notOk(re.test('x/v12'), 'anchored at the start');
  t.ok(compileFullMatch('a|b').test('b'), 'alternation stays inside the anchors');
  t.notOk(compileFullMatch('a|b').test('ab'));
  t.match(regexProblem('a)|(b'), /not a valid regular expression/);
  t.equal(regexProblem('\\d+'), undefined);
  t.end();
});
