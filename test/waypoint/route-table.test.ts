import t from 'tap';
import { L7Resource } from '../../common/wire.ts';
import type { Service } from '../../common/wire.ts';
import { compileRouteTable, matchRoute, pickBackend } from '../../waypoint/route-table.ts';
import type { NoMatch, RequestView, RouteMatch, RouteTable, WeightedBackends } from '../../waypoint/route-table.ts';

function svc(ns: string, name: string, ports: { name?: string; port: number }[] = [{ name: 'http', port: 80 }, { name: 'admin', port: 9090 }]): Service {
  return { namespace: ns, name, hostname: `${name}.${ns}.svc.cluster.local`, vips: ['10.96.0.10'], ports: ports.map((p) => ({ ...p, targetPort: p.port })), endpoints: [] };
}
const parentWeb = { group: '', kind: 'Service', name: 'web', namespace: 'demo' };

/** A route as the push client hands it over: parsed by the wire schema (defaults filled). */
function route(kind: 'HTTPRoute' | 'GRPCRoute', ns: string, name: string, spec: Record<string, unknown>, creationTimestamp?: string): L7Resource {
  return L7Resource.parse({ kind, namespace: ns, name, ...(creationTimestamp !== undefined ? { creationTimestamp } : {}), spec: { parentRefs: [parentWeb], ...spec } });
}
const http = (ns: string, name: string, spec: Record<string, unknown>, ts?: string): L7Resource => route('HTTPRoute', ns, name, spec, ts);
const grpc = (ns: string, name: string, spec: Record<string, unknown>, ts?: string): L7Resource => route('GRPCRoute', ns, name, spec, ts);

function table(routes: L7Resource[], services: Service[] = [svc('demo', 'web')]): RouteTable {
  return compileRouteTable({
    version: 7,
    services: new Map(services.map((s) => [`${s.namespace}/${s.name}`, s])),
    l7: new Map(routes.map((r) => [`${r.kind}/${r.namespace}/${r.name}`, r])),
  });
}

function req(path: string, o: { method?: string; port?: number; headers?: Record<string, string> } = {}): RequestView {
  const headers = o.headers ?? {};
  return { port: o.port ?? 80, method: o.method ?? 'GET', path, authority: 'web.demo.svc.cluster.local', header: (n) => headers[n] };
}

/** `<route>#<rule name or index>` of the match, or the no-match reason. */
function hit(tb: RouteTable, r: RequestView, caller: string | null = 'client'): string {
  const m = matchRoute(tb, 'demo/web', r, caller ?? undefined);
  return m.matched ? `${m.route.name}#${m.rule.name ?? m.rule.index}` : m.reason;
}
/** One rule per path match, named after it. */
const rules = (...paths: [string, string, Record<string, unknown>?][]): Record<string, unknown> => ({
  rules: paths.map(([name, value, extra]) => ({ name, matches: [{ path: { type: value.startsWith('=') ? 'Exact' : value.startsWith('~') ? 'RegularExpression' : 'PathPrefix', value: value.replace(/^[=~]/, '') }, ...extra }] })),
});

t.test('PathPrefix matches whole path elements; Exact is exact; the query string is not part of the path', (t) => {
  const tb = table([http('demo', 'r', rules(['foo', '/foo'], ['exact', '=/exact'], ['slash', '/bar/']))]);
  t.equal(hit(tb, req('/foo')), 'r#foo');
  t.equal(hit(tb, req('/foo/')), 'r#foo');
  t.equal(hit(tb, req('/foo/bar')), 'r#foo');
  t.equal(hit(tb, req('/foo?x=1')), 'r#foo', 'query stripped');
  t.equal(hit(tb, req('/foobar')), 'no-match', '/foo does not match /foobar');
  t.equal(hit(tb, req('/Foo')), 'no-match', 'case-sensitive');
  t.equal(hit(tb, req('/exact')), 'r#exact');
  t.equal(hit(tb, req('/exact?q')), 'r#exact');
  t.equal(hit(tb, req('/exact/')), 'no-match', 'Exact: a trailing slash is another path');
  t.equal(hit(tb, req('/bar')), 'r#slash', 'a trailing slash on the prefix is ignored');
  t.equal(hit(tb, req('/barn')), 'no-match');
  const all = table([http('demo', 'all', {})]);
  t.equal(hit(all, req('/anything/at/all')), 'all#0', 'no rules: one rule matching every path');
  const m = matchRoute(tb, 'demo/web', req('/foo/x'), 'client') as RouteMatch;
  t.equal(m.pathPrefix, '/foo', 'the matched prefix, for ReplacePrefixMatch');
  t.end();
});

t.test('precedence across rules and routes: Exact, longest prefix, method, headers, query params', (t) => {
  const tb = table([
    http('demo', 'a', rules(['root', '/'], ['api', '/api'], ['regex', '~/api/v[0-9]+/.*'])),
    http('demo', 'b', rules(['api-v1', '/api/v1'], ['api-exact', '=/api/v1/users'])),
    http('demo', 'c', rules(['post', '/api/v1', { method: 'POST' }], ['hdr', '/api/v1', { headers: [{ name: 'x-env', value: 'canary' }] }],
      ['hdr2', '/api/v1', { headers: [{ name: 'x-env', value: 'canary' }, { name: 'x-user', value: 'u1' }] }], ['q', '/api/v1', { queryParams: [{ name: 'debug', value: '1' }] }])),
  ]);
  t.equal(hit(tb, req('/api/v1/users')), 'b#api-exact', 'Exact first, even from another route');
  t.equal(hit(tb, req('/api/v1/users/7')), 'b#api-v1', 'then the longest prefix');
  t.equal(hit(tb, req('/api/v2/x')), 'a#api', 'a prefix before a regex');
  t.equal(hit(tb, req('/other')), 'a#root');
  t.equal(hit(tb, req('/api/v1/x', { method: 'POST', headers: { 'x-env': 'canary', 'x-user': 'u1' } })), 'c#post', 'a method match before header matches');
  t.equal(hit(tb, req('/api/v1/x', { headers: { 'x-env': 'canary', 'x-user': 'u1' } })), 'c#hdr2', 'more header matches first');
  t.equal(hit(tb, req('/api/v1/x', { headers: { 'x-env': 'canary' } })), 'c#hdr');
  t.equal(hit(tb, req('/api/v1/x?debug=1', { headers: { 'x-env': 'prod' } })), 'c#q', 'query params when nothing else differs');
  t.equal(hit(tb, req('/api/v1/x?debug=0')), 'b#api-v1', 'the query param must match');
  const regexOnly = table([http('demo', 'r', rules(['short', '~/a.*'], ['long', '~/a/b/.*']))]);
  t.equal(hit(regexOnly, req('/a/b/c')), 'r#long', 'regexes: the longer pattern first');
  t.equal(hit(regexOnly, req('/ab')), 'r#short');
  t.equal(hit(regexOnly, req('/xa')), 'no-match', 'regexes match the whole path');
  t.end();
});

t.test('ties: oldest route, then namespace/name, then the first rule and match', (t) => {
  const same = rules(['x', '/same']);
  t.equal(hit(table([http('demo', 'young', same, '2025-02-01T00:00:00Z'), http('demo', 'old', same, '2025-01-01T00:00:00Z')]), req('/same')), 'old#x');
  t.equal(hit(table([http('demo', 'b', same, '2025-01-01T00:00:00Z'), http('demo', 'a', same, '2025-01-01T00:00:00Z')]), req('/same')), 'a#x', 'same age: alphabetical');
  t.equal(hit(table([http('demo', 'a', same), http('demo', 'z', same, '2025-01-01T00:00:00Z')]), req('/same')), 'z#x', 'a route without a timestamp counts as newest');
  t.equal(hit(table([http('demo', 'r', rules(['first', '/same'], ['second', '/same']))]), req('/same')), 'r#first', 'within a route: the first rule');
  const m = matchRoute(table([http('demo', 'r', { rules: [{ matches: [{ path: { value: '/a' } }, { path: { value: '/a' }, headers: [{ name: 'x', value: '1' }] }] }] })]), 'demo/web', req('/a', { headers: { x: '1' } }), 'c') as RouteMatch;
  t.equal(m.matchIndex, 1, 'precedence is per match: the match with a header wins inside one rule too');
  t.end();
});

t.test('headers by lower-case name (first of a duplicated name counts), regex matches, query params decoded', (t) => {
  const tb = table([http('demo', 'r', rules(
    ['dup', '/h', { headers: [{ name: 'X-Env', value: 'a' }, { name: 'x-env', value: 'b' }] }],
    ['re', '/re', { headers: [{ type: 'RegularExpression', name: 'x-user', value: 'u-[0-9]+' }] }],
    ['qre', '/q', { queryParams: [{ type: 'RegularExpression', name: 'id', value: '[a-f]+' }] }],
    ['qdec', '/d', { queryParams: [{ name: 'name', value: 'a b/c' }] }],
  ))]);
  t.equal(hit(tb, req('/h', { headers: { 'x-env': 'a' } })), 'r#dup', 'header names are case-insensitive');
  t.equal(hit(tb, req('/h', { headers: { 'x-env': 'b' } })), 'no-match', 'the second match on the same name is ignored');
  t.equal(hit(tb, req('/re', { headers: { 'x-user': 'u-12' } })), 'r#re');
  t.equal(hit(tb, req('/re', { headers: { 'x-user': 'xu-12' } })), 'no-match', 'header regex matches the whole value');
  t.equal(hit(tb, req('/re')), 'no-match', 'absent header');
  t.equal(hit(tb, req('/q?id=abc&id=123')), 'r#qre', 'the first value of a repeated param');
  t.equal(hit(tb, req('/q?id=123&id=abc')), 'no-match');
  t.equal(hit(tb, req('/d?x&name=a%20b%2Fc')), 'r#qdec', 'percent-decoded');
  t.equal(hit(tb, req('/d?name=a%zz')), 'no-match', 'a bad escape is compared raw');
  t.end();
});

t.test('parentRef.port and sectionName limit a route to one port', (t) => {
  const tb = table([
    http('demo', 'all', rules(['x', '/'])),
    L7Resource.parse({ kind: 'HTTPRoute', namespace: 'demo', name: 'admin', spec: { parentRefs: [{ ...parentWeb, port: 9090 }], rules: [{ matches: [{ path: { value: '/admin' } }] }] } }),
    L7Resource.parse({ kind: 'HTTPRoute', namespace: 'demo', name: 'named', spec: { parentRefs: [{ ...parentWeb, sectionName: 'admin' }], rules: [{ matches: [{ path: { value: '/named' } }] }] } }),
    L7Resource.parse({ kind: 'HTTPRoute', namespace: 'demo', name: 'nowhere', spec: { parentRefs: [{ ...parentWeb, sectionName: 'grpc' }], rules: [{ matches: [{ path: { value: '/nowhere' } }] }] } }),
  ]);
  t.equal(hit(tb, req('/admin/x', { port: 9090 })), 'admin#0');
  t.equal(hit(tb, req('/admin/x', { port: 80 })), 'all#x', 'not on another port');
  t.equal(hit(tb, req('/named', { port: 9090 })), 'named#0', 'sectionName: the Service port of that name');
  t.equal(hit(tb, req('/named', { port: 80 })), 'all#x');
  t.equal(hit(tb, req('/nowhere', { port: 9090 })), 'all#x', 'a sectionName the Service lacks attaches nowhere');
  const portOnly = table([L7Resource.parse({ kind: 'HTTPRoute', namespace: 'demo', name: 'p', spec: { parentRefs: [{ ...parentWeb, port: 9090 }] } })]);
  t.equal(hit(portOnly, req('/', { port: 80 })), 'no-routes', 'no route on this port: the service as usual');
  t.end();
});

t.test('GAMMA: consumer routes apply to their namespace\'s callers only, and replace the producer routes for them', (t) => {
  const tb = table([
    http('demo', 'producer', rules(['exact', '=/api/v1'], ['api', '/api'])),
    http('client', 'consumer', rules(['all', '/'])),
    L7Resource.parse({ kind: 'HTTPRoute', namespace: 'batch', name: 'batch-admin', spec: { parentRefs: [{ ...parentWeb, port: 9090 }] } }),
  ]);
  t.equal(hit(tb, req('/api/v1'), 'client'), 'consumer#all', 'the consumer route wins for its callers, even against a more specific producer rule');
  t.equal(hit(tb, req('/api/v1'), 'other'), 'producer#exact', 'other namespaces get the producer routes');
  t.equal(hit(tb, req('/api/v1'), null), 'producer#exact', 'an unknown caller too');
  t.equal(hit(tb, req('/api/v1'), 'demo'), 'producer#exact', 'the service\'s own namespace');
  t.equal(hit(tb, req('/api/v1', { port: 9090 }), 'batch'), 'batch-admin#0', 'a consumer route on its port');
  t.equal(hit(tb, req('/api/v1', { port: 80 }), 'batch'), 'producer#exact', 'on ports it does not attach to, its callers get the producer routes');
  const onlyConsumer = table([http('client', 'consumer', rules(['all', '/']))]);
  t.equal(hit(onlyConsumer, req('/x'), 'other'), 'no-routes', 'a consumer route changes nothing for other callers');
  t.end();
});

t.test('GRPCRoute: service and method matching, precedence, and it wins over HTTPRoutes on the same port', (t) => {
  const g = (name: string, method: Record<string, unknown> | undefined, headers?: unknown[]): Record<string, unknown> => ({ name, matches: [{ ...(method !== undefined ? { method } : {}), ...(headers !== undefined ? { headers } : {}) }] });
  const tb = table([
    grpc('demo', 'g', { rules: [
      g('svc', { service: 'pkg.Greeter' }),
      g('both', { service: 'pkg.Greeter', method: 'SayHello' }),
      g('method', { method: 'SayHello' }),
      g('hdr', { service: 'pkg.Greeter' }, [{ name: 'x-env', value: 'canary' }]),
      g('re', { type: 'RegularExpression', service: 'pkg\\.v[0-9]+\\..*' }),
      g('any', undefined),
    ] }),
    http('demo', 'h', rules(['all', '/'])),
  ]);
  t.equal(hit(tb, req('/pkg.Greeter/SayHello')), 'g#both', 'service and method');
  t.equal(hit(tb, req('/pkg.Greeter/SayBye')), 'g#svc');
  t.equal(hit(tb, req('/pkg.Greeter/SayBye', { headers: { 'x-env': 'canary' } })), 'g#hdr', 'same service: more header matches first');
  t.equal(hit(tb, req('/other.Svc/SayHello')), 'g#method');
  t.equal(hit(tb, req('/pkg.v2.Store/Get')), 'g#re', 'a longer service pattern before shorter matches');
  t.equal(hit(tb, req('/pkg.Greeter')), 'g#any', 'not a gRPC path: only a match-all rule');
  t.equal(hit(tb, req('/index.html')), 'g#any', 'GRPCRoutes replace HTTPRoutes on the service and port');
  t.equal(hit(tb, req('/pkg.Greeterx/SayBye')), 'g#any', 'service names match whole');
  const onlyExact = table([grpc('demo', 'g', { rules: [g('svc', { service: 'a.B' })] })]);
  t.equal(hit(onlyExact, req('/a.B/M/extra')), 'no-match');
  t.equal(hit(onlyExact, req('/a.B/')), 'no-match', 'a method is required');
  const portSplit = table([
    L7Resource.parse({ kind: 'GRPCRoute', namespace: 'demo', name: 'g', spec: { parentRefs: [{ ...parentWeb, port: 9090 }] } }),
    http('demo', 'h', rules(['all', '/'])),
  ]);
  t.equal(hit(portSplit, req('/x', { port: 80 })), 'h#all', 'the HTTPRoute keeps the ports the GRPCRoute does not take');
  t.equal(hit(portSplit, req('/x', { port: 9090 })), 'no-match', 'a GRPCRoute with no rules matches nothing');
  t.end();
});

t.test('the result: filters, weighted backends with their filters, timeouts and retry in ms', (t) => {
  const tb = table([http('demo', 'r', { rules: [{
    name: 'main',
    filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-a', value: '1' }] } }],
    backendRefs: [{ name: 'web', port: 80, weight: 3 }, { name: 'web-v2', namespace: 'canary', port: 8080, filters: [{ type: 'ResponseHeaderModifier', responseHeaderModifier: { remove: ['server'] } }] }],
    timeouts: { request: '10s', backendRequest: '1500ms' },
    retry: { codes: [503], attempts: 2, backoff: '100ms' },
  }] })]);
  const m = matchRoute(tb, 'demo/web', req('/'), 'c') as RouteMatch;
  t.match(m, {
    matched: true, route: { kind: 'HTTPRoute', namespace: 'demo', name: 'r' }, rule: { index: 0, name: 'main' }, matchIndex: 0, pathPrefix: '',
    filters: [{ type: 'RequestHeaderModifier' }],
    timeouts: { requestMs: 10_000, backendRequestMs: 1500 },
    retry: { codes: [503], attempts: 2, backoffMs: 100 },
  });
  t.same(m.backends.list.map((b) => [b.namespace, b.name, b.port, b.weight, b.filters.length]), [['demo', 'web', 80, 3, 0], ['canary', 'web-v2', 8080, 1, 1]]);
  t.same(m.backends.cumulative, [3, 4]);
  t.equal(matchRoute(tb, 'demo/web', req('/other'), 'c'), m, 'the same precompiled result object every time');
  t.ok(Object.isFrozen(m) && Object.isFrozen(m.backends.list), 'results are frozen: shared by every request');
  const none = matchRoute(table([http('demo', 'r', {})]), 'demo/web', req('/'), 'c') as RouteMatch;
  t.same(none.timeouts, { requestMs: undefined, backendRequestMs: undefined });
  t.equal(none.retry, undefined);
  t.equal(none.backends.total, 0);
  t.end();
});

t.test('which routes are in the table: Service parents in the config only', (t) => {
  const tb = table([
    http('demo', 'r', rules(['x', '/'])),
    L7Resource.parse({ kind: 'HTTPRoute', namespace: 'demo', name: 'gw', spec: { parentRefs: [{ name: 'wp' }] } }),
    L7Resource.parse({ kind: 'HTTPRoute', namespace: 'demo', name: 'gone', spec: { parentRefs: [{ ...parentWeb, name: 'missing' }] } }),
    L7Resource.parse({ kind: 'TrafficPolicy', namespace: 'demo', name: 'tp', spec: { targetRefs: [{ group: '', kind: 'Service', name: 'web' }] } }),
  ], [svc('demo', 'web'), svc('demo', 'quiet')]);
  t.same(tb.services, ['demo/web']);
  t.equal(tb.version, 7);
  t.equal(tb.forService('demo/quiet'), undefined);
  t.same(matchRoute(tb, 'demo/quiet', req('/'), 'c'), { matched: false, reason: 'no-routes' } satisfies NoMatch);
  t.end();
});

t.test('no regex is compiled per request', (t) => {
  const tb = table([http('demo', 'r', rules(['re', '~/a/[0-9]+', { headers: [{ type: 'RegularExpression', name: 'x', value: 'v.*' }], queryParams: [{ type: 'RegularExpression', name: 'q', value: '[a-z]+' }] }])),
    grpc('demo', 'g', { parentRefs: [{ ...parentWeb, port: 9090 }], rules: [{ matches: [{ method: { type: 'RegularExpression', service: 's.*', method: 'M.*' } }] }] })]);
  const Real = RegExp;
  let constructed = 0;
  globalThis.RegExp = new Proxy(Real, { construct: (target, args: [string, string?]) => { constructed++; return new target(...args); } });
  try {
    for (let i = 0; i < 100; i++) {
      t.equal(hit(tb, req(`/a/${i}?q=abc`, { headers: { x: 'v1' } })), 'r#re');
      t.equal(hit(tb, req('/svc.A/Method', { port: 9090 })), 'g#0');
    }
  } finally {
    globalThis.RegExp = Real;
  }
  t.equal(constructed, 0);
  t.end();
});

t.test('pickBackend: weighted by a given random number; weight 0 never chosen', (t) => {
  const b = (...ws: number[]): WeightedBackends => {
    const m = matchRoute(table([http('demo', 'r', { rules: [{ backendRefs: ws.map((weight, i) => ({ name: `b${i}`, port: 80, weight })) }] })]), 'demo/web', req('/'), 'c') as RouteMatch;
    return m.backends;
  };
  const w = b(1, 0, 3);
  const pick = (r: number): string | undefined => pickBackend(w, r)?.name;
  t.same([0, 0.2499, 0.25, 0.5, 0.9999].map(pick), ['b0', 'b0', 'b2', 'b2', 'b2'], '1:3 split; the zero-weight backend is skipped');
  t.equal(pick(1), 'b2', 'random = 1 (outside [0, 1)): the last backend with weight');
  t.equal(pick(-1), 'b0');
  t.equal(pickBackend(b(0, 0), 0.5), undefined, 'every weight 0: nothing to pick (500)');
  t.equal(pickBackend(b(), 0.5), undefined, 'no backends');
  // Over many draws the shares follow the weights.
  const counts = new Map<string, number>();
  for (let i = 0; i < 1000; i++) { const n = pick(i / 1000) ?? ''; counts.set(n, (counts.get(n) ?? 0) + 1); }
  t.same(Object.fromEntries(counts), { b0: 250, b2: 750 });
  t.end();
});
