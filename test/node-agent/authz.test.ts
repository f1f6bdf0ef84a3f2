import t from 'tap';
import type { ProxyConfig } from '../../common/proxy-config.ts';
import type { AuthorizationPolicy, PeerAuthentication, PolicyRule, Workload } from '../../common/wire.ts';
import { authorize, authorizeInbound, globMatches, invalidIpBlocks, peerAuthMode } from '../../node-agent/authz.ts';
import { AgentState } from '../../node-agent/state.ts';

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
function st(policies: AuthorizationPolicy[], pas: PeerAuthentication[] = []): AgentState {
  const cfg: ProxyConfig = {
    version: 1,
    mesh: { trustDomain: TD, trustBundle: ['x'], rootNamespace: 'rondo-system' },
    workloads: new Map([[server.uid, server], [other.uid, other]]),
    services: new Map(),
    authorizationPolicies: new Map(policies.map((p) => [`${p.namespace}/${p.name}`, p])),
    peerAuthentications: new Map(pas.map((p) => [`${p.namespace}/${p.name}`, p])),
    l7: new Map(),
  };
  return AgentState.build(cfg, 'node-2');
}
const req = (sourceIdentity: string | undefined, port = 8080, sourceIp = '10.244.1.5', destination = server) =>
  sourceIdentity === undefined ? { sourceIp, destination, port } : { sourceIdentity, sourceIp, destination, port };

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
