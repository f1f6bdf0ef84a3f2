import t from 'tap';
import type { ProxyConfig } from '../../common/proxy-config.ts';
import type { AuthorizationPolicy, Service, Workload } from '../../common/wire.ts';
import { AgentState } from '../../node-agent/state.ts';

const TD = 'cluster.local';
function pod(i: number, node: string, extra: Partial<Workload> = {}): Workload {
  const ip = `10.${244 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
  return {
    uid: `uid-${i}`, namespace: `ns-${i % 50}`, name: `pod-${i}`, workloadName: `app-${i % 1000}`,
    serviceAccount: 'default', identity: `spiffe://${TD}/ns/ns-${i % 50}/sa/default`, ips: [ip], node,
    labels: { app: `app-${i % 1000}` }, enrolled: i % 10 !== 0, ...extra,
  };
}
function config(workloads: Workload[], services: Service[] = [], policies: AuthorizationPolicy[] = []): ProxyConfig {
  return {
    version: 7,
    mesh: { trustDomain: TD, trustBundle: ['x'], rootNamespace: 'rondo-system' },
    workloads: new Map(workloads.map((w) => [w.uid, w])),
    services: new Map(services.map((s) => [`${s.namespace}/${s.name}`, s])),
    authorizationPolicies: new Map(policies.map((p) => [`${p.namespace}/${p.name}`, p])),
    peerAuthentications: new Map(), l7: new Map(),
  };
}

t.test('indexes pods by IP/uid, services by VIP/key, local pods and enrolled local IPs', (t) => {
  const a = pod(1, 'node-1');
  const b = pod(2, 'node-2');
  const c = pod(10, 'node-1'); // not enrolled
  const s: Service = { namespace: 'ns-1', name: 's', hostname: 's.ns-1.svc.cluster.local', vips: ['10.96.0.1', 'fd00::1'], ports: [], endpoints: [] };
  const st = AgentState.build(config([a, b, c], [s]), 'node-1');
  t.equal(st.workloadByIp(a.ips[0]!), a);
  t.equal(st.workloadByUid('uid-2'), b);
  t.equal(st.workloadByIp('10.1.1.1'), undefined);
  t.equal(st.serviceByVip('fd00::1'), s);
  t.equal(st.serviceByKey('ns-1/s'), s);
  t.same(st.localWorkloads().map((w) => w.uid), ['uid-1', 'uid-10']);
  t.same(st.enrolledLocalIps(), [a.ips[0]]);
  t.ok(st.isLocal(a));
  t.notOk(st.isLocal(b));
  t.equal(st.config.version, 7);
  t.same(st.problems, []);
  t.end();
});

t.test('an IP claimed twice keeps the first pod and reports the conflict', (t) => {
  const a = pod(1, 'node-1');
  const dup = pod(2, 'node-1', { ips: a.ips });
  const st = AgentState.build(config([a, dup]), 'node-1');
  t.equal(st.workloadByIp(a.ips[0]!), a);
  t.match(st.problems, [{ type: 'workloads', key: 'uid-2', reason: /also claimed by pod ns-1\/pod-1/ }]);
  t.end();
});

t.test('policies grouped per namespace in name order', (t) => {
  const p = (namespace: string, name: string): AuthorizationPolicy => ({ namespace, name, action: 'ALLOW', rules: [] });
  const st = AgentState.build(config([], [], [p('a', 'z'), p('a', 'b'), p('c', 'x')]), 'n');
  t.same(st.policiesInNamespace('a').map((x) => x.name), ['b', 'z']);
  t.same(st.policiesInNamespace('none'), []);
  t.end();
});

t.test('waypointAddress: ready endpoint of the waypoint service, else a Deployment pod, else none', (t) => {
  const wp1 = pod(3, 'node-2', { namespace: 'demo', workloadName: 'wp', identity: `spiffe://${TD}/ns/demo/sa/wp` });
  const wp2 = pod(4, 'node-2', { namespace: 'demo', workloadName: 'wp', identity: `spiffe://${TD}/ns/demo/sa/wp` });
  const svc: Service = {
    namespace: 'demo', name: 'wp', hostname: 'wp.demo.svc.cluster.local', vips: ['10.96.0.9'], ports: [],
    endpoints: [{ workloadUid: wp1.uid, ip: wp1.ips[0]!, ready: false }, { workloadUid: wp2.uid, ip: wp2.ips[0]!, ready: true }],
  };
  const ref = { namespace: 'demo', name: 'wp' };
  const st = AgentState.build(config([wp1, wp2], [svc]), 'node-1');
  t.same(st.waypointAddress(ref), { ip: wp2.ips[0], identity: wp2.identity });
  t.ok(st.isWaypointPod(wp1, ref));
  const noSvc = AgentState.build(config([wp1]), 'node-1');
  t.same(noSvc.waypointAddress(ref), { ip: wp1.ips[0], identity: wp1.identity });
  t.equal(AgentState.build(config([]), 'node-1').waypointAddress(ref), undefined);
  const unknownPod = AgentState.build(config([], [{ ...svc, endpoints: [{ workloadUid: 'gone', ip: '10.244.9.9', ready: true }] }]), 'x');
  t.same(unknownPod.waypointAddress(ref), { ip: '10.244.9.9', identity: `spiffe://${TD}/ns/demo/sa/wp` });
  t.end();
});

t.test('a 10k-pod, 1k-service config builds in a few ms', (t) => {
  const pods = Array.from({ length: 10_000 }, (_, i) => pod(i + 1, `node-${i % 20}`));
  const services: Service[] = Array.from({ length: 1000 }, (_, i) => ({
    namespace: `ns-${i % 50}`, name: `svc-${i}`, hostname: `svc-${i}.ns.svc.cluster.local`, vips: [`10.96.${i >> 8}.${i & 255}`],
    ports: [{ port: 80, targetPort: 8080 }],
    endpoints: pods.slice(i * 10, i * 10 + 10).map((w) => ({ workloadUid: w.uid, ip: w.ips[0]!, ready: true })),
  }));
  const cfg = config(pods, services);
  AgentState.build(cfg, 'node-1'); // warm up the JIT
  const runs: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    AgentState.build(cfg, 'node-1');
    runs.push(performance.now() - t0);
  }
  runs.sort((a, b) => a - b);
  const median = runs[2]!;
  t.comment(`AgentState.build 10k pods/1k services: median ${median.toFixed(2)} ms`);
  t.ok(median < 50, `median ${median.toFixed(2)} ms`);
  const st = AgentState.build(cfg, 'node-1');
  t.equal(st.localWorkloads().length, 500);
  t.equal(st.serviceByVip('10.96.3.231')?.name, 'svc-999');
  t.end();
});

t.test('the serving waypoint of a pod: its own, or its services\' waypoint, and no one else', (t) => {
  const a = pod(1, 'node-1', { waypoint: { namespace: 'ns-1', name: 'wp-pod' } });
  const b = pod(2, 'node-1');
  const svc: Service = { namespace: 'ns-2', name: 'web', hostname: 'web.ns-2.svc.cluster.local', vips: ['10.96.0.9'], ports: [], endpoints: [{ workloadUid: b.uid, ip: b.ips[0]!, ready: true }], waypoint: { namespace: 'ns-2', name: 'wp' } };
  const st = AgentState.build(config([a, b], [svc]), 'node-1');
  t.ok(st.isServingWaypoint(a, `spiffe://${TD}/ns/ns-1/sa/wp-pod`), 'a workload waypoint');
  t.ok(st.isServingWaypoint(b, `spiffe://${TD}/ns/ns-2/sa/wp`), 'the waypoint of a service the pod backs');
  t.notOk(st.isServingWaypoint(b, `spiffe://${TD}/ns/ns-1/sa/wp-pod`), 'another pod\'s waypoint is just a caller');
  t.notOk(st.isServingWaypoint(a, a.identity), 'an ordinary caller');
  t.notOk(st.isServingWaypoint(a, undefined), 'plaintext');
  t.end();
});
