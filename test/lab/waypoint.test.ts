import t from 'tap';
import { parseLabSpec } from '../../lab/spec.ts';
import { planLab } from '../../lab/plan.ts';
import type { LabPlan } from '../../lab/plan.ts';
import {
  chooseNode, freePodIp, freeServiceIp, isWaypointGateway, planWaypoint, waypointPodObject, waypointServiceObject, waypointSliceObject, withWaypoints,
} from '../../lab/waypoint.ts';
import type { WaypointPlan } from '../../lab/waypoint.ts';
import { servicesRules } from '../../lab/plan.ts';
import { podToWorkload } from '../../controller/model/workloads.ts';
import { serviceToWire } from '../../controller/model/services.ts';
import type { KubeObject } from '../../common/kube-object.ts';
import { labDoc, namespaceDoc, deploymentDoc, serviceDoc, labSpec, tcpEcho } from '../helpers/lab-specs.ts';

// node-1: web-0, web-2 (round robin) and api-0 (pinned); node-2: web-1.
const spec = labSpec(labDoc({ nodes: 2 }), namespaceDoc('demo', { ambient: true }),
  deploymentDoc({ namespace: 'demo', name: 'web', command: tcpEcho(8080), replicas: 3 }),
  deploymentDoc({ namespace: 'demo', name: 'api', command: tcpEcho(8080), node: 'node-1' }),
  serviceDoc({ namespace: 'demo', name: 'web', port: 80, targetPort: 8080 }));
const plan = (): LabPlan => { const s = parseLabSpec(spec, 'w.yaml'); s.lab.name = 'wl'; return planLab(s); };

const gateway = (name: string, o: { ns?: string; node?: string; cls?: string } = {}): KubeObject => ({
  apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway',
  metadata: { name, namespace: o.ns ?? 'demo', ...(o.node !== undefined ? { annotations: { 'lab.rondo.dev/node': o.node } } : {}) },
  spec: { gatewayClassName: o.cls ?? 'rondo-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
});
const cmd = ['node', 'waypoint/main.ts'];

t.test('only Gateways of class rondo-waypoint get a waypoint', (t) => {
  t.ok(isWaypointGateway(gateway('wp')));
  t.notOk(isWaypointGateway(gateway('ingress', { cls: 'istio' })));
  t.notOk(isWaypointGateway({ kind: 'HTTPRoute', spec: { gatewayClassName: 'rondo-waypoint' } }));
  t.end();
});

t.test('node choice: the annotation, else the node with the fewest pods (lowest index on a tie)', (t) => {
  const p = plan();
  t.equal(chooseNode(p, [], {}, 'gw').name, 'node-2', 'node-2 runs 1 pod, node-1 runs 3');
  t.equal(chooseNode(p, [], { 'lab.rondo.dev/node': 'node-1' }, 'gw').name, 'node-1');
  t.throws(() => chooseNode(p, [], { 'lab.rondo.dev/node': 'node-9' }, 'Gateway demo/wp'),
    { code: 'RONDO_E_INVALID', message: 'Gateway demo/wp: metadata.annotations.lab.rondo.dev/node "node-9" is not a lab node (node-1, node-2)' });
  const a = planWaypoint(p, [], gateway('a'), { uid: 'u1', command: cmd });
  const b = planWaypoint(p, [a], gateway('b'), { uid: 'u2', command: cmd });
  t.equal(b.pod.node, 'node-2', 'node-2 runs 2 (a pod and a waypoint), node-1 still 3');
  const c = planWaypoint(p, [a, b], gateway('c'), { uid: 'u3', command: cmd });
  t.equal(c.pod.node, 'node-1', 'waypoints count as pods: 3 and 3, the lower index wins');
  t.end();
});

t.test('addresses: the lowest free pod IP of the node and the lowest free VIP; names take the lowest free index', (t) => {
  const p = plan();
  const n1 = p.nodes[0]!;
  t.same(p.pods.filter((x) => x.node === 'node-1').map((x) => x.ip), ['10.244.1.2', '10.244.1.3', '10.244.1.4']);
  t.equal(freePodIp(p, [], n1), '10.244.1.5', 'after the planned pods');
  t.equal(freeServiceIp(p, []), '10.96.0.11', 'the spec\'s Service holds .10');
  const a = planWaypoint(p, [], gateway('a', { node: 'node-1' }), { uid: 'u1', command: cmd });
  t.match(a, { pod: { ip: '10.244.1.5', netns: 'wl-w1', hostVeth: 'vw1', node: 'node-1' }, service: { clusterIP: '10.96.0.11' } });
  const b = planWaypoint(p, [a], gateway('b', { node: 'node-1' }), { uid: 'u2', command: cmd });
  t.match(b, { pod: { ip: '10.244.1.6', netns: 'wl-w2', hostVeth: 'vw2' }, service: { clusterIP: '10.96.0.12' } });
  const c = planWaypoint(p, [b], gateway('c', { node: 'node-1' }), { uid: 'u3', command: cmd });
  t.match(c, { pod: { ip: '10.244.1.5', netns: 'wl-w1', hostVeth: 'vw1' }, service: { clusterIP: '10.96.0.11' } }, 'a deleted waypoint\'s address, VIP and names are reused');
  const full: WaypointPlan[] = [];
  for (let i = 0; i < 250; i++) full.push({ ...a, pod: { ...a.pod, ip: `10.244.1.${5 + i}` } });
  t.throws(() => freePodIp(p, full, n1), { code: 'RONDO_E_INVALID', message: /node node-1 has no free pod address left in 10\.244\.1\.0\/24/ });
  t.end();
});

t.test('bad Gateways are refused with the reason', (t) => {
  const p = plan();
  t.throws(() => planWaypoint(p, [], gateway('Bad_Name'), { uid: 'u', command: cmd }), { message: /Gateway demo\/Bad_Name: metadata\.name must be a DNS label/ });
  t.throws(() => planWaypoint(p, [], gateway('x'.repeat(48)), { uid: 'u', command: cmd }), { message: /at most 47 characters/ });
  t.throws(() => planWaypoint(p, [], gateway('web'), { uid: 'u', command: cmd }), { message: 'Gateway demo/web: the lab spec already has a Service demo/web; the waypoint needs a Service of its own name: rename the Gateway or the Service' });
  const a = planWaypoint(p, [], gateway('a'), { uid: 'u1', command: cmd });
  t.throws(() => planWaypoint(p, [a], gateway('a'), { uid: 'u2', command: cmd }), { message: 'Gateway demo/a: already has a waypoint' });
  t.end();
});

t.test('the objects written read in the controller as the waypoint: workload name, identity, not captured, Service endpoints', (t) => {
  const p = plan();
  const w = planWaypoint(p, [], gateway('wp'), { uid: 'uid-wp', command: cmd });
  const ns: KubeObject = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'demo', labels: { 'rondo.dev/dataplane-mode': 'ambient', 'rondo.dev/use-waypoint': 'wp' } } };
  const running = waypointPodObject(w, 'Running');
  t.match(running.metadata, { name: /^wp-[0-9a-f]{9}-[0-9a-f]{5}$/, namespace: 'demo', uid: 'uid-wp', labels: { 'gateway.networking.k8s.io/gateway-name': 'wp', 'rondo.dev/dataplane-mode': 'none' } });
  t.match(running, { spec: { serviceAccountName: 'wp', nodeName: 'node-2' }, status: { phase: 'Running', podIP: w.pod.ip } });
  const r = podToWorkload(running, ns, 'cluster.local');
  t.ok('workload' in r);
  if (!('workload' in r)) return t.end();
  t.match(r.workload, { workloadName: 'wp', serviceAccount: 'wp', identity: 'spiffe://cluster.local/ns/demo/sa/wp', enrolled: false, ips: [w.pod.ip] });
  t.notOk('waypoint' in r.workload, 'the waypoint is not sent through itself although its namespace uses it');
  t.match(podToWorkload(waypointPodObject(w, 'Pending'), ns, 'cluster.local'), { skip: 'phase Pending' }, 'not a workload until ready');

  const svc = waypointServiceObject(w);
  t.match(svc, { metadata: { name: 'wp', namespace: 'demo' }, spec: { clusterIP: w.service.clusterIP, selector: { 'gateway.networking.k8s.io/gateway-name': 'wp' }, ports: [{ name: 'mesh', port: 15008, targetPort: 15008 }] } });
  const wire = serviceToWire(svc, ns, [waypointSliceObject(w, true)], new Map());
  t.ok('service' in wire);
  if (!('service' in wire)) return t.end();
  t.same(wire.service.endpoints, [{ workloadUid: 'uid-wp', ip: w.pod.ip, ready: true }]);
  t.notOk('waypoint' in wire.service, 'the waypoint Service does not use a waypoint');
  const notReady = serviceToWire(svc, ns, [waypointSliceObject(w, false)], new Map());
  t.match(notReady, { service: { endpoints: [{ ready: false }] } }, 'the endpoint is not ready while the pod is Pending');
  t.end();
});

t.test('withWaypoints adds the pods and Services (DNAT to a Running waypoint, hosts name)', (t) => {
  const p = plan();
  const w = planWaypoint(p, [], gateway('wp'), { uid: 'u', command: cmd });
  t.equal(withWaypoints(p, []), p);
  const full = withWaypoints(p, [w]);
  t.equal(full.pods.length, p.pods.length + 1);
  t.match(servicesRules(full, (k) => k === `demo/${w.pod.name}`, false), new RegExp(`-d ${w.service.clusterIP.replace(/\./g, '\\.')}/32 -p tcp -m tcp --dport 15008 .* --to-destination ${w.pod.ip.replace(/\./g, '\\.')}:15008`));
  t.equal(p.pods.length, 4, 'the saved plan is left alone');
  t.end();
});
