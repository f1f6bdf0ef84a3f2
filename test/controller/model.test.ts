import t from 'tap';
import { ObjectStore } from '../../controller/store.ts';
import { ModelBuilder, buildSnapshot, forProxy } from '../../controller/model/build.ts';
import { authz, namespace, pod, service, slice } from './fixtures/objects.ts';
import type { KubeObject } from '../../controller/sources/types.ts';

const mesh = { trustDomain: 'cluster.local', trustBundle: ['ROOT'] };
const web = { group: '', kind: 'Service', name: 'web' };

function route(kind: 'HTTPRoute' | 'GRPCRoute', ns: string, name: string, spec: unknown, created?: string): KubeObject {
  return { apiVersion: 'gateway.networking.k8s.io/v1', kind, metadata: { name, namespace: ns, ...(created !== undefined ? { creationTimestamp: created } : {}) }, spec };
}
function gateway(ns: string, name: string, gatewayClassName: string): KubeObject {
  return { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name, namespace: ns }, spec: { gatewayClassName, listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] } };
}
function trafficPolicy(ns: string, name: string, spec: unknown): KubeObject {
  return { apiVersion: 'traffic.rondo.dev/v1alpha1', kind: 'TrafficPolicy', metadata: { name, namespace: ns }, spec };
}

function storeWith(...objs: Parameters<ObjectStore['upsert']>[0][]): ObjectStore {
  const s = new ObjectStore();
  for (const o of objs) s.upsert(o);
  return s;
}

t.test('enrollment: ambient namespace enrolls, pod label none opts out, other namespaces are not enrolled', (t) => {
  const snap = buildSnapshot(storeWith(
    namespace('demo'), namespace('plain', {}),
    pod('demo', 'a', '10.244.1.2'),
    pod('demo', 'b', '10.244.1.3', { labels: { app: 'b', 'rondo.dev/dataplane-mode': 'none' } }),
    pod('plain', 'c', '10.244.1.4'),
    pod('plain', 'd', '10.244.1.5', { labels: { 'rondo.dev/dataplane-mode': 'ambient' } }),
  ), mesh);
  const w = snap.resources.workloads;
  t.equal(w.get('uid-demo-a')?.enrolled, true);
  t.equal(w.get('uid-demo-b')?.enrolled, false, 'opt-out');
  t.equal(w.get('uid-plain-c')?.enrolled, false, 'non-ambient namespace');
  t.equal(w.get('uid-plain-d')?.enrolled, true, 'pod-level enrollment');
  t.end();
});

t.test('pods without an IP or not Running are not served; identity, owner name and telemetry labels', (t) => {
  const snap = buildSnapshot(storeWith(
    namespace('demo'),
    pod('demo', 'pending', undefined, { phase: 'Pending' }),
    pod('demo', 'noip', undefined),
    pod('demo', 'done', '10.244.1.9', { phase: 'Succeeded' }),
    pod('demo', 'web-5d8f7c9b6-x2x4z', '10.244.1.2', { sa: 'web', owner: 'web-5d8f7c9b6', labels: { app: 'web', version: 'v2', other: 'x' } }),
  ), mesh);
  t.same([...snap.resources.workloads.keys()], ['uid-demo-web-5d8f7c9b6-x2x4z']);
  t.same(snap.resources.workloads.get('uid-demo-web-5d8f7c9b6-x2x4z'), {
    uid: 'uid-demo-web-5d8f7c9b6-x2x4z', namespace: 'demo', name: 'web-5d8f7c9b6-x2x4z', workloadName: 'web',
    serviceAccount: 'web', identity: 'spiffe://cluster.local/ns/demo/sa/web', ips: ['10.244.1.2'], node: 'node-1',
    labels: { app: 'web', version: 'v2', other: 'x' }, enrolled: true,
  });
  t.ok(snap.identitiesByNode.get('node-1')?.has('spiffe://cluster.local/ns/demo/sa/default'), 'a pending pod may already get its cert');
  t.end();
});

t.test('certificate authorization follows enrollment: only enrolled pods put their identity on their node', (t) => {
  const b = new ModelBuilder(mesh);
  const store = storeWith(
    namespace('demo'), namespace('plain', {}),
    pod('demo', 'a', '10.244.1.2', { sa: 'a' }),
    pod('demo', 'out', '10.244.1.3', { sa: 'out', labels: { 'rondo.dev/dataplane-mode': 'none' } }),
    pod('plain', 'c', '10.244.1.4', { sa: 'c' }),
    pod('plain', 'd', undefined, { sa: 'd', phase: 'Pending', labels: { 'rondo.dev/dataplane-mode': 'ambient' } }),
    pod('plain', 'e', '10.244.2.5', { sa: 'e', node: 'node-2' }),
  );
  const ids = (m: ReadonlyMap<string, ReadonlySet<string>>, node: string): string[] => [...(m.get(node) ?? [])].sort();
  let snap = b.build(store);
  t.same(ids(snap.identitiesByNode, 'node-1'), ['spiffe://cluster.local/ns/demo/sa/a', 'spiffe://cluster.local/ns/plain/sa/d'], 'enrolled pods only, a pending one included');
  t.same(ids(snap.unenrolledIdentitiesByNode, 'node-1'), ['spiffe://cluster.local/ns/demo/sa/out', 'spiffe://cluster.local/ns/plain/sa/c']);
  t.same(ids(snap.identitiesByNode, 'node-2'), []);
  // Enrolling the namespace (the pods unchanged, so the per-pod cache must see the namespace).
  store.upsert(namespace('plain'));
  snap = b.build(store);
  t.same(ids(snap.identitiesByNode, 'node-2'), ['spiffe://cluster.local/ns/plain/sa/e']);
  t.ok(snap.identitiesByNode.get('node-1')?.has('spiffe://cluster.local/ns/plain/sa/c'));
  t.same(ids(snap.unenrolledIdentitiesByNode, 'node-1'), ['spiffe://cluster.local/ns/demo/sa/out']);
  t.end();
});

t.test('waypoint: Service label overrides the Namespace, none disables', (t) => {
  const snap = buildSnapshot(storeWith(
    namespace('demo', { 'rondo.dev/dataplane-mode': 'ambient', 'rondo.dev/use-waypoint': 'ns-wp' }),
    service('demo', 'inherit', '10.96.0.1'),
    service('demo', 'own', '10.96.0.2', { labels: { 'rondo.dev/use-waypoint': 'svc-wp', 'rondo.dev/use-waypoint-namespace': 'infra' } }),
    service('demo', 'off', '10.96.0.3', { labels: { 'rondo.dev/use-waypoint': 'none' } }),
    pod('demo', 'a', '10.244.1.2'),
  ), mesh);
  const s = snap.resources.services;
  t.same(s.get('demo/inherit')?.waypoint, { namespace: 'demo', name: 'ns-wp' });
  t.same(s.get('demo/own')?.waypoint, { namespace: 'infra', name: 'svc-wp' });
  t.equal(s.get('demo/off')?.waypoint, undefined);
  t.same(snap.resources.workloads.get('uid-demo-a')?.waypoint, { namespace: 'demo', name: 'ns-wp' });

  const wp = forProxy(snap, { kind: 'waypoint', namespace: 'demo', name: 'ns-wp' });
  t.same([...wp.resources.services.keys()], ['demo/inherit'], 'a waypoint gets only the services that use it');
  t.end();
});

t.test('endpoints: ready flag, named targetPort, address without targetRef resolved by pod IP, unknown address left out', (t) => {
  const snap = buildSnapshot(storeWith(
    namespace('demo'),
    pod('demo', 'a', '10.244.1.2'), pod('demo', 'b', '10.244.2.2', { node: 'node-2' }),
    service('demo', 'web', '10.96.0.10', { ports: [{ name: 'http', port: 80, targetPort: 'http' }, { port: 9090 }] }),
    slice('demo', 'web', [['10.244.1.2', 'uid-demo-a', true], ['10.244.2.2', undefined, false], ['10.244.9.9', undefined, true]]),
  ), mesh);
  const web = snap.resources.services.get('demo/web');
  t.same(web?.ports, [{ name: 'http', port: 80, targetPort: 8080 }, { port: 9090, targetPort: 9090 }]);
  t.same(web?.endpoints, [
    { workloadUid: 'uid-demo-a', ip: '10.244.1.2', ready: true },
    { workloadUid: 'uid-demo-b', ip: '10.244.2.2', ready: false },
  ]);
  t.equal(web?.hostname, 'web.demo.svc.cluster.local');
  t.end();
});

t.test('invalid resources are reported and left out alone; everything else applies', (t) => {
  const snap = buildSnapshot(storeWith(
    namespace('demo'),
    pod('demo', 'a', '10.244.1.2'),
    pod('demo', 'bad-ip', '10.244.1.300'),
    service('demo', 'bad-port', '10.96.0.5', { ports: [{ port: 'eighty' }] }),
    service('demo', 'ok', '10.96.0.6'),
    authz('demo', 'typo', { action: 'ALLOW', rules: [{ from: [{ source: { principal: ['x'] } }] }] }),
    authz('demo', 'bad-action', { action: 'PERMIT' }),
    authz('demo', 'good', { action: 'DENY', selector: { matchLabels: { app: 'a' } }, rules: [{ to: [{ operation: { ports: ['8080'], methods: ['GET'] } }] }] }),
    { apiVersion: 'security.rondo.dev/v1alpha1', kind: 'PeerAuthentication', metadata: { name: 'off', namespace: 'demo' }, spec: { mtls: { mode: 'DISABLE' } } },
    { apiVersion: 'security.rondo.dev/v1alpha1', kind: 'PeerAuthentication', metadata: { name: 'perm', namespace: 'demo' }, spec: { mtls: { mode: 'PERMISSIVE' } } },
  ), mesh);
  t.same(snap.invalid.map((i) => `${i.kind} ${i.name}`), [
    'AuthorizationPolicy bad-action', 'AuthorizationPolicy typo', 'PeerAuthentication off', 'Pod bad-ip', 'Service bad-port',
  ]);
  t.match(snap.invalid.find((i) => i.name === 'typo')?.reason, /principal/, 'reason names the field');
  t.match(snap.invalid.find((i) => i.name === 'bad-ip')?.reason, /ips/);
  t.ok(snap.resources.workloads.has('uid-demo-a'));
  t.ok(snap.resources.services.has('demo/ok'));
  t.same(snap.resources.authorizationPolicies.get('demo/good'), {
    namespace: 'demo', name: 'good', selector: { app: 'a' }, action: 'DENY', rules: [{ to: [{ ports: [8080], methods: ['GET'] }] }],
  });
  t.same(snap.resources.peerAuthentications.get('demo/perm'), { namespace: 'demo', name: 'perm', mode: 'PERMISSIVE' });
  t.end();
});

t.test('incremental build: one pod change converts one pod; unchanged resources keep their references', (t) => {
  const store = storeWith(namespace('demo'), pod('demo', 'a', '10.244.1.2'), pod('demo', 'b', '10.244.1.3'),
    service('demo', 'web', '10.96.0.10'), slice('demo', 'web', [['10.244.1.2', 'uid-demo-a', true]]));
  const b = new ModelBuilder(mesh);
  const s1 = b.build(store);
  store.upsert(pod('demo', 'b', '10.244.1.3')); // equal content: the store keeps the old object
  const s2 = b.build(store);
  t.equal(s2.resources.workloads, s1.resources.workloads, 'no change: same map');
  store.upsert(pod('demo', 'b', '10.244.1.7'));
  const s3 = b.build(store);
  t.not(s3.resources.workloads, s1.resources.workloads);
  t.equal(s3.resources.workloads.get('uid-demo-a'), s1.resources.workloads.get('uid-demo-a'), 'untouched workload: same object');
  t.equal(s3.resources.services, s1.resources.services, 'services untouched: same map');
  t.same(s3.resources.workloads.get('uid-demo-b')?.ips, ['10.244.1.7']);
  // A namespace relabel re-derives enrollment of its pods.
  store.upsert(namespace('demo', {}));
  const s4 = b.build(store);
  t.equal(s4.resources.workloads.get('uid-demo-a')?.enrolled, false);
  t.end();
});

t.test('node agents share one view with all workloads, services and policies, no L7', (t) => {
  const snap = buildSnapshot(storeWith(namespace('demo'), pod('demo', 'a', '10.244.1.2'), authz('demo', 'p', { action: 'ALLOW' }),
    route('HTTPRoute', 'demo', 'r', { parentRefs: [web] })), mesh);
  const v1 = forProxy(snap, { kind: 'node-agent', node: 'node-1' });
  const v2 = forProxy(snap, { kind: 'node-agent', node: 'node-2' });
  t.equal(v1, v2);
  t.equal(v1.resources.workloads.size, 1);
  t.equal(v1.resources.authorizationPolicies.size, 1);
  t.equal(v1.resources.l7.size, 0);
  t.equal(snap.resources.l7.size, 1);
  t.same(v1.mesh, { trustDomain: 'cluster.local', trustBundle: ['ROOT'], rootNamespace: 'rondo-system' });
  t.end();
});

t.test('ipBlocks: a CIDR typo is rejected with the field, not pushed to match nobody', (t) => {
  const snap = buildSnapshot(storeWith(
    authz('demo', 'cidr', { action: 'DENY', rules: [{ from: [{ source: { ipBlocks: ['10.0.0.0/8', '10.244.0.0/33'] } }] }] }),
    authz('demo', 'v6', { action: 'ALLOW', rules: [{ from: [{ source: { notIpBlocks: ['fd00::/129'] } }] }] }),
    authz('demo', 'ok', { action: 'ALLOW', rules: [{ from: [{ source: { ipBlocks: ['10.244.1.7', 'fd00::/64'] } }] }] }),
  ), mesh);
  t.match(snap.invalid, [
    { kind: 'AuthorizationPolicy', name: 'cidr', reason: /^spec: rules\.0\.from\.0\.source\.ipBlocks\.1: "10\.244\.0\.0\/33" is not an IP address or CIDR/ },
    { kind: 'AuthorizationPolicy', name: 'v6', reason: /source\.notIpBlocks\.0: "fd00::\/129" is not an IP address or CIDR/ },
  ]);
  t.same([...snap.resources.authorizationPolicies.keys()], ['demo/ok']);
  t.end();
});

t.test('routes and traffic policies are validated in full: invalid ones are reported with the field, valid ones pushed typed', (t) => {
  const snap = buildSnapshot(storeWith(
    namespace('demo'),
    route('HTTPRoute', 'demo', 'good', { parentRefs: [web], rules: [{ matches: [{ path: { value: '/api' } }], backendRefs: [{ name: 'web', port: 80 }] }] }, '2025-01-31T12:00:00Z'),
    route('HTTPRoute', 'demo', 'bad-path', { parentRefs: [web], rules: [{ matches: [{ path: { type: 'PathPrefix', value: 'api' } }] }] }),
    route('HTTPRoute', 'demo', 'ext', { parentRefs: [web], rules: [{ filters: [{ type: 'ExtensionRef', extensionRef: { kind: 'F', name: 'f' } }] }] }),
    route('HTTPRoute', 'demo', 'no-group', { parentRefs: [{ kind: 'Service', name: 'web' }] }),
    route('HTTPRoute', 'demo', 'bad-time', { parentRefs: [web] }, 'last tuesday'),
    route('GRPCRoute', 'demo', 'grpc-bad', { parentRefs: [web], rules: [{ matches: [{ method: { type: 'RegularExpression', service: '(' } }] }] }),
    route('GRPCRoute', 'demo', 'grpc', { parentRefs: [web], rules: [{ matches: [{ method: { service: 'pkg.Svc' } }], backendRefs: [{ name: 'web', port: 80 }] }] }),
    trafficPolicy('demo', 'tp-bad', { targetRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Service', name: 'web' }] }),
    trafficPolicy('demo', 'tp', { targetRefs: [{ group: '', kind: 'Service', name: 'web' }], loadBalancer: {} }),
  ), mesh);
  t.match(snap.invalid, [
    { kind: 'GRPCRoute', name: 'grpc-bad', reason: /^spec: rules\.0\.matches\.0\.method\.service: not a valid regular expression/ },
    { kind: 'HTTPRoute', name: 'bad-path', reason: /^spec: rules\.0\.matches\.0\.path\.value: must be an absolute path starting with '\/'/ },
    { kind: 'HTTPRoute', name: 'bad-time', reason: /^metadata\.creationTimestamp: must be an RFC 3339 time/ },
    { kind: 'HTTPRoute', name: 'ext', reason: /^spec: rules\.0\.filters\.0\.type: ExtensionRef filters are not supported/, statusReason: 'UnsupportedValue' },
    { kind: 'HTTPRoute', name: 'no-group', reason: /^spec: parentRefs\.0\.group: a Service parent needs group ""/ },
    { kind: 'TrafficPolicy', name: 'tp-bad', reason: /^spec: targetRefs\.0\.group: a Service target needs group ""/ },
  ]);
  t.equal(snap.invalid.find((i) => i.name === 'bad-path')?.statusReason, undefined, 'plain invalid values: the generic reason');
  t.same([...snap.resources.l7.keys()].sort(), ['GRPCRoute/demo/grpc', 'HTTPRoute/demo/good', 'TrafficPolicy/demo/tp']);
  t.same(snap.resources.l7.get('HTTPRoute/demo/good'), {
    kind: 'HTTPRoute', namespace: 'demo', name: 'good', creationTimestamp: '2025-01-31T12:00:00Z',
    spec: { parentRefs: [web], rules: [{ matches: [{ path: { type: 'PathPrefix', value: '/api' } }], backendRefs: [{ group: '', kind: 'Service', name: 'web', port: 80, weight: 1 }] }] },
  });
  t.same(snap.resources.l7.get('TrafficPolicy/demo/tp')?.spec, { targetRefs: [{ group: '', kind: 'Service', name: 'web' }], loadBalancer: { algorithm: 'P2CLeastRequest' } });
  t.end();
});

t.test('only routes attached to Rondo are read: another implementation\'s Gateway routes are neither pushed nor reported', (t) => {
  const cors = { parentRefs: [{ name: 'ingress' }], rules: [{ filters: [{ type: 'CORS', cors: { allowOrigins: ['*'] } }] }] };
  const store = storeWith(
    gateway('demo', 'ingress', 'istio'), gateway('demo', 'wp', 'rondo-waypoint'),
    route('HTTPRoute', 'demo', 'ingress-only', cors),
    route('HTTPRoute', 'demo', 'to-waypoint', { parentRefs: [{ name: 'wp' }] }),
    route('HTTPRoute', 'demo', 'no-parents', {}),
  );
  const b = new ModelBuilder(mesh);
  const snap = b.build(store);
  t.same(snap.invalid, []);
  t.same([...snap.resources.l7.keys()].sort(), ['Gateway/demo/wp', 'HTTPRoute/demo/to-waypoint']);
  // The same route once it also names a Service: now it is Rondo's to reject.
  store.upsert(route('HTTPRoute', 'demo', 'ingress-only', { ...cors, parentRefs: [{ name: 'ingress' }, web] }));
  t.match(b.build(store).invalid, [{ name: 'ingress-only', reason: /CORS filters are not supported/ }]);
  // A Gateway that becomes a waypoint brings its routes in without any route changing.
  store.upsert(gateway('demo', 'ingress', 'rondo-waypoint'));
  store.upsert(route('HTTPRoute', 'demo', 'ingress-only', { parentRefs: [{ name: 'ingress' }] }));
  t.ok(b.build(store).resources.l7.has('HTTPRoute/demo/ingress-only'));
  t.end();
});

t.test('a waypoint gets the consumer routes of its services from other namespaces, and the routes\' backends', (t) => {
  const snap = buildSnapshot(storeWith(
    namespace('demo', { 'rondo.dev/dataplane-mode': 'ambient', 'rondo.dev/use-waypoint': 'wp' }), namespace('client'), namespace('canary'), namespace('elsewhere'),
    service('demo', 'web', '10.96.0.10'), slice('demo', 'web', [['10.244.1.2', 'uid-demo-a', true]]), pod('demo', 'a', '10.244.1.2'),
    service('canary', 'web-v2', '10.96.0.11'), slice('canary', 'web-v2', [['10.244.2.2', 'uid-canary-b', true]]), pod('canary', 'b', '10.244.2.2'),
    service('canary', 'shadow', '10.96.0.12'),
    service('elsewhere', 'other', '10.96.0.13'),
    route('HTTPRoute', 'client', 'consumer', { parentRefs: [{ ...web, namespace: 'demo' }], rules: [{
      filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'shadow', namespace: 'canary', port: 80 } } }],
      backendRefs: [{ name: 'web-v2', namespace: 'canary', port: 80 }],
    }] }),
    route('HTTPRoute', 'elsewhere', 'unrelated', { parentRefs: [{ ...web, name: 'other' }] }),
  ), mesh);
  const wp = forProxy(snap, { kind: 'waypoint', namespace: 'demo', name: 'wp' });
  t.same([...wp.resources.l7.keys()], ['HTTPRoute/client/consumer'], 'the consumer route, not a route of an unrelated service');
  t.same([...wp.resources.services.keys()].sort(), ['canary/shadow', 'canary/web-v2', 'demo/web'], 'backends and mirror targets come along');
  t.same([...wp.resources.workloads.keys()].sort(), ['uid-canary-b', 'uid-demo-a'], 'with their endpoints');
  t.end();
});
