import t from 'tap';
import type { AuthorizationPolicy, PeerAuthentication, PolicyRule, Workload } from '../../common/wire.ts';
import { AuthzPolicies, globMatches, invalidIpBlocks } from '../../common/authz.ts';
import type { AuthzTarget, HttpRequestView, RequestView } from '../../common/authz.ts';

const TD = 'cluster.local';
const server: Workload = {
  uid: 'uid-server', namespace: 'demo', name: 'server-1', workloadName: 'server', serviceAccount: 'server',
  identity: `spiffe://${TD}/ns/demo/sa/server`, ips: ['10.244.2.7'], node: 'node-2',
  labels: { app: 'server', version: 'v1' }, enrolled: true,
};
const other: Workload = { ...server, uid: 'uid-other', name: 'other-1', workloadName: 'other', labels: { app: 'other' }, ips: ['10.244.2.8'] };
const CLIENT = `spiffe://${TD}/ns/demo/sa/client`;
const FOREIGN = `spiffe://${TD}/ns/evil/sa/attacker`;

function pol(name: string, action: AuthorizationPolicy['action'], rules: PolicyRule[], extra: Partial<AuthorizationPolicy> = {}): AuthorizationPolicy {
  return { namespace: 'demo', name, action, rules, ...extra };
}
function st(policies: AuthorizationPolicy[], pas: PeerAuthentication[] = []): AuthzPolicies {
  return AuthzPolicies.compile({ policies, peerAuthentications: pas, rootNamespace: 'rondo-system' });
}
interface Req extends RequestView { destination: AuthzTarget }
const req = (sourceIdentity: string | undefined, port = 8080, sourceIp = '10.244.1.5', destination: AuthzTarget = server): Req =>
  sourceIdentity === undefined ? { sourceIp, destination, port } : { sourceIdentity, sourceIp, destination, port };
const authorize = (a: AuthzPolicies, r: Req) => a.authorize(r.destination, r);
const authorizeInbound = (a: AuthzPolicies, r: Req, transport: 'hbone' | 'plaintext') => a.authorizeInbound(r.destination, r, transport);
const peerAuthMode = (a: AuthzPolicies, w: AuthzTarget) => a.peerAuthMode(w);

t.test('no policy: allowed', (t) => {
  t.match(authorize(st([]), req(CLIENT)), { allowed: true, audited: [] });
  t.end();
});

t.test('ALLOW by principal admits that principal only', (t) => {
  const s = st([pol('allow-client', 'ALLOW', [{ from: [{ principals: [`${TD}/ns/demo/sa/client`] }] }])]);
  t.match(authorize(s, req(CLIENT)), { allowed: true, policy: 'demo/allow-client' });
  const r = authorize(s, req(FOREIGN));
  t.match(r, { allowed: false, code: 'RONDO_E_POLICY_DENIED' });
  t.match(r.reason, /no ALLOW policy matched.*demo\/allow-client/);
  t.equal(authorize(s, req(undefined)).allowed, false, 'plaintext never matches principals');
  t.end();
});

t.test('principal forms: spiffe:// prefix, *, prefix*, *suffix', (t) => {
  const mk = (p: string) => st([pol('a', 'ALLOW', [{ from: [{ principals: [p] }] }])]);
  t.ok(authorize(mk(`spiffe://${TD}/ns/demo/sa/client`), req(CLIENT)).allowed);
  t.ok(authorize(mk('*'), req(CLIENT)).allowed);
  t.notOk(authorize(mk('*'), req(undefined)).allowed, '* requires an identity');
  t.ok(authorize(mk(`${TD}/ns/demo/*`), req(CLIENT)).allowed);
  t.notOk(authorize(mk(`${TD}/ns/demo/*`), req(FOREIGN)).allowed);
  t.ok(authorize(mk('*/sa/client'), req(CLIENT)).allowed);
  t.ok(globMatches('abc*', 'abcdef') && globMatches('*def', 'abcdef') && !globMatches('abc', 'abcd'));
  t.end();
});

t.test('DENY wins over ALLOW; namespaces compare to the peer identity namespace', (t) => {
  const s = st([
    pol('allow-all', 'ALLOW', [{}]),
    pol('deny-evil', 'DENY', [{ from: [{ namespaces: ['evil'] }] }]),
  ]);
  t.match(authorize(s, req(FOREIGN)), { allowed: false, code: 'RONDO_E_POLICY_DENIED', policy: 'demo/deny-evil', reason: /DENY policy demo\/deny-evil/ });
  t.match(authorize(s, req(CLIENT)), { allowed: true, policy: 'demo/allow-all' });
  t.end();
});

t.test('ALLOW with zero rules allows nothing; DENY with zero rules denies nothing', (t) => {
  t.equal(authorize(st([pol('nothing', 'ALLOW', [])]), req(CLIENT)).allowed, false);
  t.equal(authorize(st([pol('nothing', 'DENY', [])]), req(CLIENT)).allowed, true);
  t.end();
});

t.test('selector limits a policy to matching pods', (t) => {
  const s = st([pol('only-other', 'ALLOW', [], { selector: { app: 'other' } })]);
  t.equal(authorize(s, req(CLIENT)).allowed, true, 'server not selected');
  t.equal(authorize(s, req(CLIENT, 8080, '10.0.0.1', other)).allowed, false, 'other selected: allow nothing');
  const v = st([pol('v2', 'DENY', [{}], { selector: { app: 'server', version: 'v2' } })]);
  t.equal(authorize(v, req(CLIENT)).allowed, true, 'version label must match too');
  t.end();
});

t.test('root namespace policies apply mesh-wide; other namespaces do not leak', (t) => {
  const root = pol('deny-evil', 'DENY', [{ from: [{ namespaces: ['evil'] }] }], { namespace: 'rondo-system' });
  t.equal(authorize(st([root]), req(FOREIGN)).allowed, false);
  const elsewhere = pol('deny-all', 'DENY', [{}], { namespace: 'prod' });
  t.equal(authorize(st([elsewhere]), req(CLIENT)).allowed, true);
  t.end();
});

t.test('ports and notPorts in to', (t) => {
  const s = st([pol('p', 'ALLOW', [{ to: [{ ports: [8080] }] }])]);
  t.ok(authorize(s, req(CLIENT, 8080)).allowed);
  t.notOk(authorize(s, req(CLIENT, 9090)).allowed);
  const n = st([pol('np', 'DENY', [{ to: [{ notPorts: [8080] }] }])]);
  t.ok(authorize(n, req(CLIENT, 8080)).allowed);
  t.notOk(authorize(n, req(CLIENT, 22)).allowed);
  t.end();
});

t.test('ipBlocks and notIpBlocks, including plaintext peers and IPv4-mapped addresses', (t) => {
  const s = st([pol('ip', 'ALLOW', [{ from: [{ ipBlocks: ['10.244.1.0/24', '192.0.2.9'] }] }])]);
  t.ok(authorize(s, req(undefined, 80, '10.244.1.77')).allowed);
  t.ok(authorize(s, req(undefined, 80, '::ffff:10.244.1.77')).allowed);
  t.ok(authorize(s, req(undefined, 80, '192.0.2.9')).allowed);
  t.notOk(authorize(s, req(undefined, 80, '10.244.2.1')).allowed);
  const n = st([pol('nip', 'DENY', [{ from: [{ notIpBlocks: ['10.0.0.0/8'] }] }])]);
  t.ok(authorize(n, req(CLIENT, 80, '10.1.2.3')).allowed);
  t.notOk(authorize(n, req(CLIENT, 80, '172.16.0.1')).allowed);
  t.notOk(authorize(n, req(CLIENT, 80, 'fd00::1')).allowed, 'IPv6 peer outside the v4 block');
  t.end();
});

t.test('invalid CIDRs fail closed and are reported', (t) => {
  const bad = pol('bad', 'DENY', [{ from: [{ ipBlocks: ['10.0.0.0/33'] }] }]);
  t.notOk(authorize(st([bad]), req(CLIENT)).allowed, 'DENY with a bad block denies');
  const badAllow = pol('bad', 'ALLOW', [{ from: [{ ipBlocks: ['nonsense', '10.244.1.0/24'] }] }]);
  t.ok(authorize(st([badAllow]), req(CLIENT)).allowed, 'valid entries still work');
  t.notOk(authorize(st([badAllow]), req(CLIENT, 80, '10.9.9.9')).allowed);
  const badNot = pol('badnot', 'ALLOW', [{ from: [{ notIpBlocks: ['x/1'] }] }]);
  t.notOk(authorize(st([badNot]), req(CLIENT)).allowed, 'ALLOW with a bad notIpBlocks allows nobody');
  t.same(invalidIpBlocks(badAllow), ['nonsense']);
  t.same(invalidIpBlocks(pol('ok', 'ALLOW', [{ from: [{ ipBlocks: ['fd00::/64'] }] }])), []);
  t.end();
});

t.test('L7 fields: ALLOW rule never matches, DENY rule matches on its L4 part', (t) => {
  const allowGet = st([pol('get', 'ALLOW', [{ to: [{ methods: ['GET'] }] }])]);
  t.notOk(authorize(allowGet, req(CLIENT)).allowed);
  const denyDelete = st([pol('del', 'DENY', [{ from: [{ namespaces: ['evil'] }], to: [{ methods: ['DELETE'] }] }])]);
  t.notOk(authorize(denyDelete, req(FOREIGN)).allowed, 'fails closed for the L4-matching peer');
  t.ok(authorize(denyDelete, req(CLIENT)).allowed, 'other peers unaffected');
  t.end();
});

t.test('notPrincipals/notNamespaces', (t) => {
  const s = st([pol('d', 'DENY', [{ from: [{ notNamespaces: ['demo'] }] }])]);
  t.ok(authorize(s, req(CLIENT)).allowed);
  t.notOk(authorize(s, req(FOREIGN)).allowed);
  t.notOk(authorize(s, req(undefined)).allowed, 'plaintext has no namespace, so it is "not demo"');
  const p = st([pol('a', 'ALLOW', [{ from: [{ notPrincipals: [`${TD}/ns/evil/*`] }] }])]);
  t.ok(authorize(p, req(CLIENT)).allowed);
  t.notOk(authorize(p, req(FOREIGN)).allowed);
  t.end();
});

t.test('within a source fields AND; sources and rules OR', (t) => {
  const s = st([pol('a', 'ALLOW', [
    { from: [{ namespaces: ['demo'], ipBlocks: ['10.244.1.0/24'] }] },
    { from: [{ principals: [`${TD}/ns/evil/sa/attacker`] }], to: [{ ports: [9999] }] },
  ])]);
  t.ok(authorize(s, req(CLIENT, 80, '10.244.1.5')).allowed);
  t.notOk(authorize(s, req(CLIENT, 80, '10.244.3.5')).allowed, 'namespace ok but IP not');
  t.ok(authorize(s, req(FOREIGN, 9999)).allowed);
  t.notOk(authorize(s, req(FOREIGN, 80)).allowed);
  t.end();
});

t.test('AUDIT records matches without enforcing', (t) => {
  const s = st([pol('audit-evil', 'AUDIT', [{ from: [{ namespaces: ['evil'] }] }]), pol('audit-none', 'AUDIT', [])]);
  t.match(authorize(s, req(FOREIGN)), { allowed: true, audited: ['demo/audit-evil'] });
  t.match(authorize(s, req(CLIENT)), { allowed: true, audited: [] });
  t.end();
});

t.test('peerAuthMode: workload selector > namespace > root namespace > STRICT', (t) => {
  const pa = (namespace: string, name: string, mode: 'STRICT' | 'PERMISSIVE', selector?: Record<string, string>): PeerAuthentication =>
    selector === undefined ? { namespace, name, mode } : { namespace, name, mode, selector };
  t.equal(peerAuthMode(st([]), server), 'STRICT');
  t.equal(peerAuthMode(st([], [pa('rondo-system', 'mesh', 'PERMISSIVE')]), server), 'PERMISSIVE');
  t.equal(peerAuthMode(st([], [pa('rondo-system', 'mesh', 'PERMISSIVE'), pa('demo', 'ns', 'STRICT')]), server), 'STRICT');
  const s = st([], [pa('demo', 'ns', 'STRICT'), pa('demo', 'srv', 'PERMISSIVE', { app: 'server' })]);
  t.equal(peerAuthMode(s, server), 'PERMISSIVE');
  t.equal(peerAuthMode(s, other), 'STRICT');
  t.equal(peerAuthMode(st([], [pa('rondo-system', 'sel', 'PERMISSIVE', { app: 'server' })]), server), 'STRICT', 'root selector policies are not mesh-wide');
  t.end();
});

t.test('authorizeInbound: plaintext refused under STRICT, policy-checked under PERMISSIVE', (t) => {
  const permissive: PeerAuthentication = { namespace: 'demo', name: 'p', mode: 'PERMISSIVE' };
  const strict = authorizeInbound(st([]), req(CLIENT), 'plaintext');
  t.match(strict, { allowed: false, code: 'RONDO_E_PLAINTEXT_NOT_ALLOWED', mode: 'STRICT', reason: /plaintext connection from 10\.244\.1\.5 to demo\/server-1 refused: mTLS mode is STRICT/ });
  t.match(authorizeInbound(st([]), req(CLIENT), 'hbone'), { allowed: true, mode: 'STRICT' });
  t.match(authorizeInbound(st([], [permissive]), req(undefined), 'plaintext'), { allowed: true, mode: 'PERMISSIVE' });
  const onlyClient = pol('a', 'ALLOW', [{ from: [{ principals: [CLIENT] }] }]);
  t.match(authorizeInbound(st([onlyClient], [permissive]), req(CLIENT), 'plaintext'), { allowed: false },
    'a claimed identity is ignored on plaintext');
  t.end();
});

// ---- L7: the waypoint passes the HTTP request in the view ----

const http = (method: string, path: string, host = 'server.demo.svc.cluster.local'): HttpRequestView => ({ method, path, host });
const l7 = (a: AuthzPolicies, sourceIdentity: string | undefined, h: HttpRequestView, port = 8080): ReturnType<AuthzPolicies['authorize']> =>
  a.authorize(server, { ...req(sourceIdentity, port), http: h });

t.test('L7 ALLOW: methods and paths are evaluated when the view has them', (t) => {
  const s = st([pol('get-api', 'ALLOW', [{ to: [{ methods: ['GET', 'HEAD'], paths: ['/api/*', '/healthz', '*.js'] }] }])]);
  t.match(l7(s, CLIENT, http('GET', '/api/users')), { allowed: true, policy: 'demo/get-api' }, 'prefix');
  t.ok(l7(s, CLIENT, http('HEAD', '/healthz')).allowed, 'exact');
  t.ok(l7(s, CLIENT, http('GET', '/static/app.js')).allowed, 'suffix');
  t.notOk(l7(s, CLIENT, http('GET', '/healthz/x')).allowed, 'exact is exact');
  t.notOk(l7(s, CLIENT, http('get', '/healthz')).allowed, 'methods are case-sensitive');
  const r = l7(s, CLIENT, http('POST', '/api/users'));
  t.match(r, { allowed: false, code: 'RONDO_E_POLICY_DENIED', reason: /no ALLOW policy matched.* for cluster\.local\/ns\/demo\/sa\/client POST server\.demo\.svc\.cluster\.local\/api\/users on port 8080/ });
  t.notOk(authorize(s, req(CLIENT)).allowed, 'the same policy at L4 cannot grant (fails closed)');
  t.end();
});

t.test('L7 paths ignore the query and fragment, as Istio url_path', (t) => {
  const s = st([pol('deny-admin', 'DENY', [{ to: [{ paths: ['/admin', '/admin/*'] }] }])]);
  t.notOk(l7(s, CLIENT, http('GET', '/admin?x=1')).allowed, 'a query does not dodge an exact DENY');
  t.notOk(l7(s, CLIENT, http('GET', '/admin#frag')).allowed);
  t.notOk(l7(s, CLIENT, http('GET', '/admin/users?id=1')).allowed);
  t.ok(l7(s, CLIENT, http('GET', '/public?next=/admin')).allowed, 'the query itself is not the path');
  t.end();
});

t.test('L7 presence `*` and notX variants', (t) => {
  const s = st([pol('a', 'ALLOW', [{ to: [{ methods: ['*'], notMethods: ['DELETE'], notPaths: ['/internal/*'] }] }])]);
  t.ok(l7(s, CLIENT, http('PATCH', '/x')).allowed);
  t.notOk(l7(s, CLIENT, http('DELETE', '/x')).allowed, 'notMethods excludes');
  t.notOk(l7(s, CLIENT, http('GET', '/internal/metrics')).allowed, 'notPaths excludes');
  const d = st([pol('d', 'DENY', [{ to: [{ notHosts: ['*.demo.svc.cluster.local'] }] }])]);
  t.ok(l7(d, CLIENT, http('GET', '/')).allowed, 'own host: not denied');
  t.notOk(l7(d, CLIENT, http('GET', '/', 'evil.example.com')).allowed, 'any other host is denied');
  t.end();
});

t.test('L7 hosts are case-insensitive; an exact host does not match host:port', (t) => {
  const s = st([pol('h', 'ALLOW', [{ to: [{ hosts: ['Server.Demo', 'api.example.com:*'] }] }])]);
  t.ok(l7(s, CLIENT, http('GET', '/', 'server.demo')).allowed);
  t.ok(l7(s, CLIENT, http('GET', '/', 'SERVER.DEMO')).allowed, 'RFC 4343: a differently cased Host is the same host');
  t.notOk(l7(s, CLIENT, http('GET', '/', 'server.demo:8080')).allowed, 'exact means exact, as in Istio');
  t.ok(l7(s, CLIENT, http('GET', '/', 'api.example.com:8443')).allowed, 'host:* for any port');
  const deny = st([pol('d', 'DENY', [{ to: [{ hosts: ['admin.demo'] }] }])]);
  t.notOk(l7(deny, CLIENT, http('GET', '/', 'ADMIN.demo')).allowed, 'case does not dodge a DENY');
  t.end();
});

t.test('L7 rules AND sources with operations, and ports still apply', (t) => {
  const s = st([pol('a', 'ALLOW', [{ from: [{ namespaces: ['demo'] }], to: [{ ports: [8080], methods: ['GET'] }] }])]);
  t.ok(l7(s, CLIENT, http('GET', '/')).allowed);
  t.notOk(l7(s, FOREIGN, http('GET', '/')).allowed, 'wrong source');
  t.notOk(l7(s, CLIENT, http('GET', '/'), 9090).allowed, 'wrong port');
  t.notOk(l7(s, undefined, http('GET', '/')).allowed, 'plaintext has no namespace');
  t.end();
});

t.test('L4 view and L7 rules: DENY applies on its L4 part, AUDIT too; at L7 both look at the request', (t) => {
  const s = st([
    pol('deny-delete', 'DENY', [{ from: [{ namespaces: ['evil'] }], to: [{ methods: ['DELETE'] }] }]),
    pol('audit-post', 'AUDIT', [{ to: [{ methods: ['POST'] }] }]),
  ]);
  t.match(authorize(s, req(FOREIGN)), { allowed: false, code: 'RONDO_E_POLICY_DENIED', audited: ['demo/audit-post'] }, 'L4: the whole connection');
  t.match(l7(s, FOREIGN, http('GET', '/')), { allowed: true, audited: [] }, 'L7: a GET is not a DELETE');
  t.match(l7(s, FOREIGN, http('DELETE', '/')), { allowed: false, policy: 'demo/deny-delete' });
  t.match(l7(s, CLIENT, http('POST', '/')), { allowed: true, audited: ['demo/audit-post'] });
  t.end();
});

t.test('unsupported path templates fail closed: DENY matches every path, ALLOW none', (t) => {
  const deny = st([pol('d', 'DENY', [{ to: [{ paths: ['/api/{*}/admin'] }] }])]);
  t.notOk(l7(deny, CLIENT, http('GET', '/anything')).allowed);
  const allow = st([pol('a', 'ALLOW', [{ to: [{ paths: ['/api/{**}', '/ok'] }] }])]);
  t.notOk(l7(allow, CLIENT, http('GET', '/api/x')).allowed, 'the template grants nothing');
  t.ok(l7(allow, CLIENT, http('GET', '/ok')).allowed, 'the supported entries still work');
  const notAllow = st([pol('n', 'ALLOW', [{ to: [{ notPaths: ['/x/{*}'] }] }])]);
  t.notOk(l7(notAllow, CLIENT, http('GET', '/y')).allowed, 'ALLOW with an unsupported notPaths excludes everything');
  t.end();
});

t.test('compiled once per version: the same policies answer alike, and policy objects are not mutated', (t) => {
  const policies = [pol('get', 'ALLOW', [{ to: [{ methods: ['GET'], paths: ['/a*'] }] }])];
  const before = JSON.stringify(policies);
  const s = st(policies);
  for (let i = 0; i < 3; i++) t.ok(l7(s, CLIENT, http('GET', '/abc')).allowed);
  t.equal(JSON.stringify(policies), before);
  t.same(s.applicable(server), ['demo/get']);
  t.same(s.policiesInNamespace('demo').map((p) => p.name), ['get']);
  t.end();
});
