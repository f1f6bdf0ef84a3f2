import t from 'tap';
import type { ProxyConfig } from '../../common/proxy-config.ts';
import type { Service, Workload } from '../../common/wire.ts';
import { decideOutbound, inboundSource, pickerKey, pickerPools, type OutboundDecision } from '../../node-agent/decide.ts';
import { EndpointPicker } from '../../common/endpoint-picker.ts';
import { AgentState } from '../../node-agent/state.ts';

const TD = 'cluster.local';
function pod(name: string, ip: string, node: string, extra: Partial<Workload> = {}): Workload {
  return {
    uid: `uid-${name}`, namespace: 'demo', name, workloadName: name.replace(/-\d+$/, ''),
    serviceAccount: name, identity: `spiffe://${TD}/ns/${extra.namespace ?? 'demo'}/sa/${name}`,
    ips: [ip], node, labels: { app: name.replace(/-\d+$/, '') }, enrolled: true, ...extra,
  };
}
function svc(name: string, vip: string, eps: Workload[], extra: Partial<Service> = {}): Service {
  return {
    namespace: 'demo', name, hostname: `${name}.demo.svc.cluster.local`, vips: [vip],
    ports: [{ port: 80, targetPort: 8080 }],
    endpoints: eps.map((w) => ({ workloadUid: w.uid, ip: w.ips[0]!, ready: true })), ...extra,
  };
}
function config(workloads: Workload[], services: Service[]): ProxyConfig {
  return {
    version: 1,
    mesh: { trustDomain: TD, trustBundle: ['x'], rootNamespace: 'rondo-system' },
    workloads: new Map(workloads.map((w) => [w.uid, w])),
    services: new Map(services.map((s) => [`${s.namespace}/${s.name}`, s])),
    authorizationPolicies: new Map(), peerAuthentications: new Map(), l7: new Map(),
  };
}

const client = pod('client-1', '10.244.1.5', 'node-1');
const remote = pod('server-1', '10.244.2.7', 'node-2');
const local = pod('server-2', '10.244.1.9', 'node-1');
const plain = pod('legacy-1', '10.244.2.20', 'node-2', { enrolled: false });
const notEnrolledLocal = pod('batch-1', '10.244.1.30', 'node-1', { enrolled: false });
const wpPod = pod('wp-1', '10.244.2.50', 'node-2', { workloadName: 'wp', identity: `spiffe://${TD}/ns/demo/sa/wp` });
const wpSvc = svc('wp', '10.96.0.50', [wpPod], { ports: [{ port: 15008, targetPort: 15008 }] });
const viaWp = pod('reviews-1', '10.244.2.60', 'node-2', { waypoint: { namespace: 'demo', name: 'wp' } });
const services = [
  svc('server', '10.96.0.10', [remote]),
  svc('local', '10.96.0.11', [local]),
  svc('legacy', '10.96.0.12', [plain]),
  svc('empty', '10.96.0.13', []),
  svc('notready', '10.96.0.14', [remote], { endpoints: [{ workloadUid: remote.uid, ip: remote.ips[0]!, ready: false }] }),
  svc('reviews', '10.96.0.15', [viaWp], { waypoint: { namespace: 'demo', name: 'wp' } }),
  svc('nowp', '10.96.0.16', [remote], { waypoint: { namespace: 'demo', name: 'missing' } }),
  svc('ghost', '10.96.0.17', [], { endpoints: [{ workloadUid: 'uid-gone', ip: '10.244.3.3', ready: true }] }),
  wpSvc,
];
const state = AgentState.build(config([client, remote, local, plain, notEnrolledLocal, wpPod, viaWp], services), 'node-1');
const wpState = AgentState.build(config([client, remote, local, plain, wpPod, viaWp], services), 'node-2');
const d = (src: string, ip: string, port: number, st = state, lb = new EndpointPicker()): OutboundDecision =>
  decideOutbound(st, { ip: src }, { ip, port }, lb);

t.test('pod IP of an enrolled pod on another node: HBONE to its 15008 with its identity', (t) => {
  t.match(d(client.ips[0]!, '10.244.2.7', 9000), {
    kind: 'hbone', connectTo: { ip: '10.244.2.7', port: 15008 }, authority: '10.244.2.7:9000',
    expectedIdentity: remote.identity, source: { uid: client.uid }, destination: { uid: remote.uid },
  });
  t.notOk((d(client.ips[0]!, '10.244.2.7', 9000) as { service?: unknown }).service);
  t.end();
});

t.test('pod IP of an enrolled pod on this node: local direct connection', (t) => {
  t.match(d(client.ips[0]!, '10.244.1.9', 8080), { kind: 'local', ip: '10.244.1.9', port: 8080, destination: { uid: local.uid } });
  t.end();
});

t.test('pod IP of a pod not in the mesh: passthrough', (t) => {
  t.match(d(client.ips[0]!, '10.244.2.20', 80), { kind: 'passthrough', ip: '10.244.2.20', port: 80, source: { uid: client.uid } });
  t.end();
});

t.test('address outside the cluster: passthrough unchanged', (t) => {
  t.match(d(client.ips[0]!, '192.0.2.1', 443), { kind: 'passthrough', ip: '192.0.2.1', port: 443 });
  t.end();
});

t.test('unknown source IP is refused: source not enrolled', (t) => {
  const r = d('10.244.1.200', '10.244.2.7', 80);
  t.equal(r.kind, 'refuse');
  t.match(r, { code: 'RONDO_E_SOURCE_NOT_ENROLLED', reason: /source not enrolled.*10\.244\.1\.200/ });
  t.end();
});

t.test('local pod that is not enrolled is refused', (t) => {
  t.match(d(notEnrolledLocal.ips[0]!, '10.244.2.7', 80), { kind: 'refuse', code: 'RONDO_E_SOURCE_NOT_ENROLLED', reason: /not enrolled/, source: { uid: notEnrolledLocal.uid } });
  t.end();
});

t.test('enrolled pod of another node claiming to be a source here is refused', (t) => {
  t.match(d(remote.ips[0]!, '10.244.1.9', 80), { kind: 'refuse', reason: /on node node-2, not node-1/ });
  t.end();
});

t.test('service VIP: endpoint on another node via HBONE to ip:targetPort, service attached', (t) => {
  t.match(d(client.ips[0]!, '10.96.0.10', 80), {
    kind: 'hbone', connectTo: { ip: '10.244.2.7', port: 15008 }, authority: '10.244.2.7:8080',
    expectedIdentity: remote.identity, service: { name: 'server' },
  });
  t.end();
});

t.test('service VIP with a same-node endpoint: local with targetPort', (t) => {
  t.match(d(client.ips[0]!, '10.96.0.11', 80), { kind: 'local', ip: '10.244.1.9', port: 8080, service: { name: 'local' } });
  t.end();
});

t.test('service VIP whose endpoint is not enrolled: passthrough to the endpoint targetPort', (t) => {
  t.match(d(client.ips[0]!, '10.96.0.12', 80), { kind: 'passthrough', ip: '10.244.2.20', port: 8080 });
  t.end();
});

t.test('service endpoint with no known pod: passthrough', (t) => {
  t.match(d(client.ips[0]!, '10.96.0.17', 80), { kind: 'passthrough', ip: '10.244.3.3', port: 8080 });
  t.end();
});

t.test('service VIP on an undeclared port: passthrough to the VIP (as Istio)', (t) => {
  t.match(d(client.ips[0]!, '10.96.0.10', 81), { kind: 'passthrough', ip: '10.96.0.10', port: 81 });
  t.end();
});

t.test('service with no endpoints: refused naming the service', (t) => {
  t.match(d(client.ips[0]!, '10.96.0.13', 80), { kind: 'refuse', code: 'RONDO_E_NO_READY_ENDPOINTS', reason: /service demo\/empty port 80 has no ready endpoints/ });
  t.end();
});

t.test('service with only unready endpoints: refused', (t) => {
  t.match(d(client.ips[0]!, '10.96.0.14', 80), { kind: 'refuse', reason: /demo\/notready.*\(1 total\)/ });
  t.end();
});

t.test('service with a waypoint: HBONE to the waypoint pod with vip:port authority', (t) => {
  t.match(d(client.ips[0]!, '10.96.0.15', 80), {
    kind: 'waypoint', connectTo: { ip: '10.244.2.50', port: 15008 }, authority: '10.96.0.15:80',
    expectedIdentity: `spiffe://${TD}/ns/demo/sa/wp`, service: { name: 'reviews' },
  });
  t.end();
});

t.test('the waypoint itself reaching the service goes straight to an endpoint', (t) => {
  t.match(d(wpPod.ips[0]!, '10.96.0.15', 80, wpState), { kind: 'local', ip: '10.244.2.60', port: 8080 });
  t.end();
});

t.test('service whose waypoint has no ready pod: refused (fail closed)', (t) => {
  t.match(d(client.ips[0]!, '10.96.0.16', 80), { kind: 'refuse', code: 'RONDO_E_WAYPOINT_UNAVAILABLE', reason: /waypoint demo\/missing/ });
  t.end();
});

t.test('pod IP of a workload with its own waypoint: sent to the waypoint with pod authority', (t) => {
  t.match(d(client.ips[0]!, '10.244.2.60', 8080), {
    kind: 'waypoint', connectTo: { ip: '10.244.2.50' }, authority: '10.244.2.60:8080', service: { name: 'reviews' },
  });
  t.end();
});

t.test('pod-addressed waypoint workload without a Service: pod stand-in service', (t) => {
  const lone = pod('lone-1', '10.244.2.61', 'node-2', { waypoint: { namespace: 'demo', name: 'wp' } });
  const st = AgentState.build(config([client, wpPod, lone], [wpSvc]), 'node-1');
  t.match(d(client.ips[0]!, '10.244.2.61', 80, st), { kind: 'waypoint', service: { name: 'lone-1', vips: [] } });
  t.end();
});

t.test('VIP round robin over idle endpoints, least-connections once loaded', (t) => {
  const a = pod('s-1', '10.244.2.1', 'node-2');
  const b = pod('s-2', '10.244.2.2', 'node-2');
  const c = pod('s-3', '10.244.2.3', 'node-2');
  const st = AgentState.build(config([client, a, b, c], [svc('s', '10.96.1.1', [a, b, c])]), 'node-1');
  const lb = new EndpointPicker({ random: () => 0 });
  const picks = [0, 1, 2, 3].map(() => (d(client.ips[0]!, '10.96.1.1', 80, st, lb) as { authority: string }).authority);
  t.same(picks, ['10.244.2.1:8080', '10.244.2.2:8080', '10.244.2.3:8080', '10.244.2.1:8080']);
  // Load a: P2C with random()=0 compares a (index 0) with b (index 1) and takes b.
  lb.acquire('10.244.2.1:8080');
  t.match(d(client.ips[0]!, '10.96.1.1', 80, st, lb), { authority: '10.244.2.2:8080' });
  t.end();
});

t.test('pickerPools names the pools decisions pick in: a config change keeps live cursors and forgets removed ones', (t) => {
  const a = pod('s-1', '10.244.2.1', 'node-2');
  const b = pod('s-2', '10.244.2.2', 'node-2');
  const c = pod('s-3', '10.244.2.3', 'node-2');
  const st = AgentState.build(config([client, a, b, c], [svc('s', '10.96.1.1', [a, b, c])]), 'node-1');
  const without = AgentState.build(config([client, a, b, c], []), 'node-1');
  const lb = new EndpointPicker();
  const pick = (): string => (d(client.ips[0]!, '10.96.1.1', 80, st, lb) as { authority: string }).authority;
  t.same([pick(), pick()], ['10.244.2.1:8080', '10.244.2.2:8080']);
  lb.retainPools(pickerPools(st));
  t.equal(pick(), '10.244.2.3:8080', 'the service still exists: round robin carries on');
  lb.retainPools(pickerPools(without));
  t.equal(pick(), '10.244.2.1:8080', 'the service was gone: its cursor was forgotten');
  t.ok(pickerPools(AgentState.build(config([client, wpPod], [wpSvc]), 'node-1')).has('waypoint:demo/wp'), 'waypoint replica pools too');
  t.end();
});

t.test('IPv6 pod target gets a bracketed authority', (t) => {
  const v6 = pod('v6-1', 'fd00::7', 'node-2');
  const st = AgentState.build(config([client, v6], []), 'node-1');
  t.match(d(client.ips[0]!, 'fd00::7', 80, st), { kind: 'hbone', authority: '[fd00::7]:80', connectTo: { ip: 'fd00::7' } });
  t.end();
});

t.test('waypoint replicas are spread with the picker; pickerKey names what to count', (t) => {
  const wpA = pod('wp-1', '10.244.2.50', 'node-2', { workloadName: 'wp', identity: `spiffe://${TD}/ns/demo/sa/wp` });
  const wpB = pod('wp-2', '10.244.3.50', 'node-3', { workloadName: 'wp', identity: `spiffe://${TD}/ns/demo/sa/wp` });
  const wps = svc('wp', '10.96.0.50', [wpA, wpB], { ports: [{ port: 15008, targetPort: 15008 }] });
  const st = AgentState.build(config([client, wpA, wpB, viaWp], [wps, services[5]!]), 'node-1');
  const lb = new EndpointPicker();
  const first = d(client.ips[0]!, '10.96.0.15', 80, st, lb);
  const second = d(client.ips[0]!, '10.96.0.15', 80, st, lb);
  t.same([first, second].map((x) => (x as { connectTo: { ip: string } }).connectTo.ip), ['10.244.2.50', '10.244.3.50']);
  t.equal(pickerKey(first), '10.244.2.50:15008');
  t.equal(pickerKey(d(client.ips[0]!, '10.96.0.10', 80)), '10.244.2.7:8080');
  t.equal(pickerKey(d(client.ips[0]!, '10.96.0.11', 80)), '10.244.1.9:8080');
  t.equal(pickerKey(d(client.ips[0]!, '192.0.2.1', 443)), '192.0.2.1:443');
  t.equal(pickerKey(d('10.9.9.9', '192.0.2.1', 443)), undefined);
  t.end();
});

t.test('inbound source labels: from the verified identity; baggage only picks among its workloads', (t) => {
  const shared = `spiffe://${TD}/ns/demo/sa/shared`;
  const alpha = pod('alpha-1', '10.244.3.1', 'node-3', { identity: shared });
  const beta = pod('beta-1', '10.244.3.2', 'node-3', { identity: shared });
  const st = AgentState.build(config([client, alpha, beta], []), 'node-1');
  const forged = 'k8s.namespace.name=evil,k8s.deployment.name=forged';
  t.match(inboundSource(st, client.identity, forged), { namespace: 'demo', workloadName: 'client' }, 'one workload: baggage ignored');
  t.match(inboundSource(st, shared, 'k8s.namespace.name=demo,k8s.deployment.name=beta'), { uid: beta.uid });
  t.match(inboundSource(st, shared, 'k8s.deployment.name=alpha'), { uid: alpha.uid });
  t.same(inboundSource(st, shared, forged), { namespace: 'demo', workloadName: 'unknown', identity: shared }, 'not one of its workloads');
  t.same(inboundSource(st, shared, 'k8s.namespace.name=other,k8s.deployment.name=beta'), { namespace: 'demo', workloadName: 'unknown', identity: shared }, 'another namespace');
  t.same(inboundSource(st, `spiffe://${TD}/ns/team/sa/new`, forged), { namespace: 'team', workloadName: 'unknown', identity: `spiffe://${TD}/ns/team/sa/new` }, 'no workload yet: namespace from the identity');
  t.equal(inboundSource(st, undefined, forged), undefined, 'no identity: nothing');
  t.end();
});
