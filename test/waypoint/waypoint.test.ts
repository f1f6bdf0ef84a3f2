// The waypoint end to end on loopback: a real controller pushes the routes and policies, the
// test connects over HBONE as a source agent would, and echo pods answer behind it.
import t from 'tap';
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type http from 'node:http';
import { startHarness, echoServer, until } from './harness.ts';
import { baseCluster, ECHO_ROUTE, DENY_ADMIN, VIP, POD_V1, POD_V2 } from './fixtures.ts';

interface Echo { pod: string; method: string; url: string; headers: Record<string, string>; body: string }

t.test('waypoint: routing, filters, timeouts, L7 authorization, metrics and access log', async (t) => {
  const servers: http.Server[] = [];
  let slowRes: http.ServerResponse | undefined;
  const slow = (req: http.IncomingMessage, res: http.ServerResponse): boolean => {
    if (req.url?.startsWith('/slow') !== true) return false;
    slowRes = res;
    return true;
  };
  servers.push(await echoServer('echo-v1', POD_V1, 8080, slow), await echoServer('echo-v2', POD_V2, 8080));
  t.teardown(() => { for (const s of servers) { s.closeAllConnections(); s.close(); } });
  // Deterministic weighted choice: a cycle of values over [0, 1).
  let n = 0;
  const h = await startHarness({ ...baseCluster(), 'route.yaml': ECHO_ROUTE, 'policy.yaml': DENY_ADMIN }, { random: () => ((n++ * 0.37) % 1) });
  t.teardown(() => h.close());
  await until(async () => (await h.request(VIP, { path: '/', headers: { 'x-version': 'v2' } })).headers['x-pod'] === 'echo-v2', 'the route to be pushed');

  const v2 = await h.request(VIP, { path: '/hello', headers: { 'x-version': 'v2' } });
  t.equal(v2.status, 200);
  t.equal((JSON.parse(v2.body) as Echo).pod, 'echo-v2', 'a header match routes to v2');

  const counts = { 'echo-v1': 0, 'echo-v2': 0 } as Record<string, number>;
  for (let i = 0; i < 100; i++) {
    const r = await h.request(VIP, { path: `/split/${i}` });
    counts[(JSON.parse(r.body) as Echo).pod] = (counts[(JSON.parse(r.body) as Echo).pod] ?? 0) + 1;
  }
  t.ok(counts['echo-v1']! >= 80 && counts['echo-v1']! <= 97 && counts['echo-v2']! >= 3, `90/10 split: ${JSON.stringify(counts)}`);

  const redirect = await h.request(VIP, { path: '/old?x=1', headers: { host: 'echo.demo:80' } });
  t.equal(redirect.status, 301);
  t.equal(redirect.headers.location, 'http://echo.demo/new?x=1', 'redirect keeps the query, drops the well-known port');

  const api = await h.request(VIP, { path: '/api/items?q=1', headers: { 'x-secret': 's' } });
  const apiEcho = JSON.parse(api.body) as Echo;
  t.equal(apiEcho.url, '/v1/api/items?q=1', 'URLRewrite replaces the matched prefix');
  t.equal(apiEcho.headers['x-added'], 'yes', 'request header set');
  t.equal(apiEcho.headers['x-secret'], undefined, 'request header removed');
  t.equal(api.headers['x-route'], 'api', 'response header added');

  const denied = await h.request(VIP, { method: 'POST', path: '/admin/users', body: 'x' });
  t.equal(denied.status, 403, 'L7 DENY on POST /admin');
  t.match(denied.body, /RBAC: access denied: denied by DENY policy demo\/no-admin-writes/);
  t.equal((await h.request(VIP, { method: 'GET', path: '/admin/users' })).status, 200, 'GET /admin is allowed');

  const post = await h.request(VIP, { method: 'POST', path: '/only-get', body: 'hello' });
  t.equal(post.status, 200, 'a method match that fails falls to the next rule (/ catch-all)');
  t.equal((JSON.parse(post.body) as Echo).body, 'hello', 'the request body is forwarded');

  const started = Date.now();
  const timedOut = await h.request(VIP, { path: '/slow' });
  t.equal(timedOut.status, 504, 'timeouts.request: 504 when the backend is slower');
  t.ok(Date.now() - started >= 250, 'not before the timeout');
  t.match(timedOut.body, /did not answer within 300 ms/);
  slowRes?.destroy();

  const bad = await h.request('10.96.0.99:80', { path: '/' }).catch((e: unknown) => e);
  t.ok(bad instanceof Error && /404|not a service VIP|neither/.test(String((bad).message)), 'a CONNECT for an address the waypoint does not serve is refused');

  const metrics = await (await fetch(h.metricsUrl)).text();
  t.match(metrics, /istio_requests_total\{reporter="waypoint",source_workload="unknown",source_workload_namespace="client",source_principal="spiffe:\/\/cluster.local\/ns\/client\/sa\/client",destination_workload="echo",destination_workload_namespace="demo",destination_service="echo-v2.demo.svc.cluster.local",destination_principal="unknown",request_protocol="http",connection_security_policy="mutual_tls",response_code="200",grpc_response_status="",response_flags="-"\} \d+/);
  t.match(metrics, /istio_requests_total\{[^}]*response_code="403"[^}]*response_flags="policy_denied"\} 1/);
  t.match(metrics, /istio_requests_total\{[^}]*response_code="504"[^}]*response_flags="request_timeout"\} 1/);
  t.match(metrics, /istio_request_duration_milliseconds_bucket\{le="0.5",reporter="waypoint"/);
  const denyLog = h.records.find((r) => r.status === 403);
  t.match(denyLog, { kind: 'request', method: 'POST', path: '/admin/users', code: 'RONDO_E_POLICY_DENIED', policy: 'demo/no-admin-writes', source: 'spiffe://cluster.local/ns/client/sa/client' }, 'access log names the policy');
  t.match(h.records.find((r) => r.path === '/api/items?q=1'), { route: 'HTTPRoute/demo/echo', upstream: `${POD_V1}:8080`, status: 200, service: 'demo/echo-v1' });
});

t.test('waypoint: no routes → the service itself; a route change applies without a restart', async (t) => {
  const servers = [await echoServer('echo-v1', POD_V1, 8080), await echoServer('echo-v2', POD_V2, 8080)];
  t.teardown(() => { for (const s of servers) { s.closeAllConnections(); s.close(); } });
  const h = await startHarness(baseCluster());
  t.teardown(() => h.close());
  const seen = new Set<string>();
  for (let i = 0; i < 20; i++) seen.add((JSON.parse((await h.request(VIP, { path: '/' })).body) as Echo).pod);
  t.same([...seen].sort(), ['echo-v1', 'echo-v2'], 'without routes the service balances over its endpoints');
  const put = (text: string): void => { writeFileSync(join(h.dir, 'route.tmp'), text); renameSync(join(h.dir, 'route.tmp'), join(h.stateDir, 'route.yaml')); };
  put(ECHO_ROUTE.replace('weight: 90', 'weight: 0').replace('weight: 10', 'weight: 1'));
  await until(async () => (await h.request(VIP, { path: '/api/x' })).headers['x-route'] === 'api', 'the new route');
  for (let i = 0; i < 10; i++) t.equal((JSON.parse((await h.request(VIP, { path: `/x${i}` })).body) as Echo).pod, 'echo-v2');
  const nomatch = ECHO_ROUTE.replace(/- matches: \[\{ path: \{ type: PathPrefix, value: \/ \} \}\]\n.*\n/, '');
  put(nomatch);
  await until(async () => (await h.request(VIP, { path: '/x' })).status === 404, 'the route without a catch-all');
  const r = await h.request(VIP, { path: '/nothing-matches' });
  t.equal(r.status, 404);
  t.match(r.body, /no route rule of demo\/echo matches GET \/nothing-matches/);
});
