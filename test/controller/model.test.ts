import t from 'tap';
import { ObjectStore } from '../../controller/store.ts';
import { ModelBuilder, buildSnapshot, forProxy } from '../../controller/model/build.ts';
import { authz, namespace, pod, service, slice } from './fixtures/objects.ts';

const mesh = { trustDomain: 'cluster.local', trustBundle: ['ROOT'] };

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
    { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'r', namespace: 'demo' }, spec: { parentRefs: [] } }), mesh);
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
