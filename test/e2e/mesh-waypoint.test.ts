// The waypoint in a real lab: client pod → source agent → waypoint (HBONE, its own identity)
// → destination agent → server pod, for a Service bound with rondo.dev/use-waypoint. A 90/10
// canary, a header route to v2, an L7 DENY on POST /admin answered 403 while the destination
// agent admits the waypoint, request metrics with reporter="waypoint"; and fail closed when
// the waypoint goes away.
import t from 'tap';
import { deploymentDoc, labDoc, labSpec, namespaceDoc } from '../helpers/lab-specs.ts';
import { labSkipReason, withLab } from '../helpers/lab.ts';
import { waitUntil } from '../helpers/mesh.ts';
import type { Lab } from '../../lab/lab.ts';

const skip = labSkipReason();
const echo = (port: number): string[] => ['rondo-demo', 'echo', '--port', String(port)];
const service = (name: string, selector: string, labels = ''): string => `apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: demo${labels} }
spec:
  selector: ${selector}
  ports: [{ name: http, port: 80, targetPort: 8080 }]
`;
const spec = labSpec(
  labDoc(),
  namespaceDoc('demo', { ambient: true }),
  deploymentDoc({ namespace: 'demo', name: 'echo-v1', node: 'node-2', serviceAccount: 'echo', labels: { svc: 'echo' }, command: echo(8080) }),
  deploymentDoc({ namespace: 'demo', name: 'echo-v2', node: 'node-1', serviceAccount: 'echo', labels: { svc: 'echo' }, command: echo(8080) }),
  deploymentDoc({ namespace: 'demo', name: 'client', node: 'node-1', command: echo(9000) }),
  service('echo', '{ svc: echo }', ', labels: { rondo.dev/use-waypoint: wp }'),
  service('echo-v1', '{ app: echo-v1 }'),
  service('echo-v2', '{ app: echo-v2 }'),
);
const gateway = `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: wp, namespace: demo }
spec:
  gatewayClassName: rondo-waypoint
  listeners: [{ name: mesh, port: 15008, protocol: HBONE }]
`;
const route = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: echo, namespace: demo }
spec:
  parentRefs: [{ group: "", kind: Service, name: echo, port: 80 }]
  rules:
    - matches: [{ headers: [{ name: x-version, value: v2 }] }]
      backendRefs: [{ name: echo-v2, port: 80 }]
    - backendRefs: [{ name: echo-v1, port: 80, weight: 90 }, { name: echo-v2, port: 80, weight: 10 }]
`;
const deny = `apiVersion: security.rondo.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: no-admin-writes, namespace: demo }
spec:
  selector: { matchLabels: { svc: echo } }
  action: DENY
  rules: [{ to: [{ operation: { methods: [POST], paths: ["/admin*"] } }] }]
`;

async function curl(lab: Lab, args: string[]): Promise<{ code: string; body: string }> {
  const r = await lab.exec('demo/client', ['curl', '-s', '-m', '5', '-w', '\n%{http_code}', ...args], { allowFail: true, timeoutMs: 8000 });
  const at = r.stdout.lastIndexOf('\n');
  return { body: r.stdout.slice(0, Math.max(at, 0)), code: r.stdout.slice(at + 1) };
}
const podOf = (body: string): string => { try { return (JSON.parse(body) as { pod: string }).pod; } catch { return '?'; } };

t.test('waypoint in the lab: canary, header route, L7 DENY, metrics, fail closed', { skip: skip ?? false, timeout: 240_000 }, async (t) => {
  const lab = await withLab(t, spec);
  await lab.waitForPort('demo/echo-v1', 8080, 20_000);
  await lab.waitForPort('demo/echo-v2', 8080, 20_000);
  const vip = lab.serviceIp('demo/echo');
  t.match((await lab.applyAsync(gateway, 'gw.yaml')).map((r) => r.outcome), ['created']);
  t.teardown(() => lab.deleteAsync(gateway, 'gw.yaml').then(() => undefined, () => undefined));
  t.same((await lab.applyAsync(route + '---\n' + deny, 'l7.yaml')).map((r) => r.outcome), ['created', 'created']);
  let last = { code: '', body: '' };
  await waitUntil('the route through the waypoint', async () => podOf((last = await curl(lab, ['-H', 'x-version: v2', `http://${vip}/`])).body).startsWith('echo-v2'), 40_000, 300)
    .catch(async (e: unknown) => {
      const w = lab.waypoints()[0];
      const v = await lab.exec('demo/client', ['sh', '-c', `curl -s --http0.9 -m 5 -H 'x-version: v2' http://${vip}/ | od -c | head -12`], { allowFail: true, timeoutMs: 8000 });
      const logs = await lab.execNode('node-1', ['sh', '-c', `tail -n 3 ${w?.log ?? '/dev/null'}`], { allowFail: true });
      t.comment(`last answer: ${JSON.stringify(last)}\n${v.stdout}\n${v.stderr}\n${logs.stdout}`);
      throw e;
    });

  for (let i = 0; i < 5; i++) t.match(podOf((await curl(lab, ['-H', 'x-version: v2', `http://${vip}/h${i}`])).body), /^echo-v2/, 'header route to v2');
  const counts = { v1: 0, v2: 0, other: 0 };
  for (let i = 0; i < 60; i++) {
    const p = podOf((await curl(lab, [`http://${vip}/c${i}`])).body);
    if (p.startsWith('echo-v1')) counts.v1++; else if (p.startsWith('echo-v2')) counts.v2++; else counts.other++;
  }
  t.equal(counts.other, 0, 'every canary call answered');
  t.ok(counts.v1 >= 45 && counts.v2 >= 1, `90/10 canary: ${JSON.stringify(counts)}`);
  const denied = await curl(lab, ['-X', 'POST', '--data', 'x', `http://${vip}/admin/users`]);
  t.equal(denied.code, '403', 'POST /admin refused at the waypoint');
  t.match(denied.body, /denied by DENY policy demo\/no-admin-writes/);
  t.equal((await curl(lab, [`http://${vip}/admin/users`])).code, '200', 'GET /admin allowed: the destination agent admits its waypoint despite the L7 DENY');

  const w = lab.waypoints().find((x) => x.gateway === 'wp');
  t.ok(w !== undefined, 'the lab runs the waypoint pod');
  const wpMetrics = await lab.exec('demo/client', ['curl', '-s', '-m', '5', `http://${w?.pod.ip ?? ''}:15020/metrics`], { allowFail: true });
  t.match(wpMetrics.stdout, /istio_requests_total\{reporter="waypoint",[^}]*source_principal="spiffe:\/\/cluster.local\/ns\/demo\/sa\/client"[^}]*destination_service="echo-v2.demo.svc.cluster.local"[^}]*response_code="200"/);
  t.match(wpMetrics.stdout, /istio_requests_total\{[^}]*response_code="403"[^}]*response_flags="policy_denied"\}/);

  await lab.deleteAsync(gateway, 'gw.yaml');
  await waitUntil('calls to refuse without the waypoint', async () => (await curl(lab, [`http://${vip}/gone`])).code === '000', 30_000, 300);
  t.pass('with the waypoint gone the bound service is refused, not reached directly');
});
