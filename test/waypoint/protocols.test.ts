// Protocols through the waypoint: HTTP/2 with prior knowledge and gRPC (trailers, status,
// UNIMPLEMENTED / PERMISSION_DENIED answered as gRPC), opaque TCP, WebSocket-style upgrades,
// and malformed HTTP (request smuggling, oversized headers, an upstream reset mid-response).
import t from 'tap';
import net from 'node:net';
import http from 'node:http';
import type http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import { startHarness, echoServer, h2Server, until } from './harness.ts';
import { baseCluster, podIps, VIP } from './fixtures.ts';

const NET = 4;
const { POD_V1, POD_V2, H2_POD } = podIps(NET);

const GRPC_VIP = '10.96.0.13:80';
const GRPC_ROUTE = `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: grpc, namespace: demo }
spec:
  parentRefs: [{ group: "", kind: Service, name: grpc, port: 80 }]
  rules:
    - matches: [{ method: { service: demo.Echo } }]
      backendRefs: [{ name: grpc, port: 80 }]
`;
const DENY_SECRET = `apiVersion: security.rondo.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: no-secret, namespace: demo }
spec:
  selector: { matchLabels: { app: grpc } }
  action: DENY
  rules: [{ to: [{ operation: { paths: ["/demo.Echo/Secret"] } }] }]
`;

function h2Request(s: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body = ''): Promise<{ headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const st = s.request(headers);
    let h: http2.IncomingHttpHeaders = {};
    let tr: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    st.on('response', (x) => { h = x; });
    st.on('trailers', (x: http2.IncomingHttpHeaders) => { tr = x; });
    st.on('data', (c: Buffer) => chunks.push(c));
    st.on('end', () => resolve({ headers: h, trailers: tr, body: Buffer.concat(chunks).toString() }));
    st.on('error', reject);
    // A GET's stream is already ended by the client (no body).
    if (!st.writableEnded) st.end(body);
  });
}

function raw(stream: Duplex, text: string): Promise<string> {
  return new Promise((resolve) => {
    let out = '';
    stream.on('data', (c: Buffer) => { out += c.toString(); });
    stream.on('end', () => resolve(out));
    stream.on('close', () => resolve(out));
    stream.on('error', () => resolve(out));
    stream.write(text);
  });
}

t.test('waypoint protocols', { timeout: 60_000 }, async (t) => {
  const upstreamSockets = new Set<net.Socket>();
  const resetMidResponse = (req: http.IncomingMessage, res: http.ServerResponse): boolean => {
    if (req.url !== '/reset-mid-response') return false;
    res.writeHead(200, { 'content-length': '100' });
    res.write('partial');
    setImmediate(() => req.socket.destroy());
    return true;
  };
  const v1 = await echoServer('echo-v1', POD_V1, 8080, resetMidResponse);
  const v2 = await echoServer('echo-v2', POD_V2, 8080, resetMidResponse);
  v1.on('connection', (s: net.Socket) => upstreamSockets.add(s));
  // Upgrades and opaque TCP: a raw server on 127.0.3.2:8081 that echoes bytes.
  const rawSrv = net.createServer((s) => { s.on('error', () => undefined); s.pipe(s); }).listen(8081, POD_V2);
  for (const srv of [v1, v2]) {
    srv.on('upgrade', (req: http.IncomingMessage, socket: Duplex) => {
      socket.on('error', () => undefined);
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: ${String(req.headers.upgrade)}\r\nconnection: upgrade\r\n\r\n`);
      socket.pipe(socket);
    });
  }
  const g = await h2Server('grpc-1', H2_POD, 9090);
  t.teardown(() => { for (const s of [v1, v2]) { s.closeAllConnections(); s.close(); } rawSrv.close(); g.close(); });
  const files = baseCluster(NET);
  files['tcp.yaml'] = `apiVersion: v1
kind: Service
metadata: { name: raw, namespace: demo }
spec:
  clusterIP: 10.96.0.20
  ports: [{ name: tcp, port: 7000, targetPort: 8081, appProtocol: tcp }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
addressType: IPv4
metadata: { name: raw-x, namespace: demo, labels: { kubernetes.io/service-name: raw } }
endpoints: [{ addresses: [${POD_V2}], conditions: { ready: true }, nodeName: node-1, targetRef: { kind: Pod, name: echo-v2, namespace: demo, uid: uid-echo-v2 } }]
ports: [{ name: tcp, port: 8081, protocol: TCP }]
`;
  files['grpc-route.yaml'] = GRPC_ROUTE;
  files['deny.yaml'] = DENY_SECRET;
  const h = await startHarness(files);
  t.teardown(() => h.close());

  await t.test('HTTP/2 prior knowledge and gRPC', async (t) => {
    const s = await h.h2(GRPC_VIP);
    t.teardown(() => s.close());
    await until(async () => (await h2Request(s, { ':method': 'POST', ':path': '/demo.Other/Call', 'content-type': 'application/grpc' })).headers['grpc-status'] === '12', 'the GRPCRoute');
    const ok = await h2Request(s, { ':method': 'POST', ':path': '/demo.Echo/Call', 'content-type': 'application/grpc', te: 'trailers', 'x-want-status': '0' }, 'req');
    t.equal(ok.headers[':status'], 200);
    t.equal(ok.headers['x-pod'], 'grpc-1');
    t.equal(ok.trailers['grpc-status'], '0', 'trailers pass through');
    t.equal(ok.trailers['grpc-message'], 'from-grpc-1');
    t.match(JSON.parse(ok.body), { path: '/demo.Echo/Call', body: 'req' });
    const failed = await h2Request(s, { ':method': 'POST', ':path': '/demo.Echo/Call', 'content-type': 'application/grpc', 'x-want-status': '5' });
    t.equal(failed.trailers['grpc-status'], '5', 'an application gRPC status passes through');
    const unimpl = await h2Request(s, { ':method': 'POST', ':path': '/demo.Other/Call', 'content-type': 'application/grpc' });
    t.equal(unimpl.headers[':status'], 200);
    t.equal(unimpl.headers['grpc-status'], '12', 'no GRPCRoute match: UNIMPLEMENTED as a trailers-only response');
    const denied = await h2Request(s, { ':method': 'POST', ':path': '/demo.Echo/Secret', 'content-type': 'application/grpc' });
    t.equal(denied.headers['grpc-status'], '7', 'L7 DENY for gRPC: PERMISSION_DENIED');
    t.match(decodeURIComponent(String(denied.headers['grpc-message'])), /denied by DENY policy demo\/no-secret/);
    // Several streams in flight on one session (multiplexed to one upstream session).
    const many = await Promise.all(Array.from({ length: 20 }, (_, i) => h2Request(s, { ':method': 'POST', ':path': '/demo.Echo/Call', 'content-type': 'application/grpc' }, `m${i}`)));
    t.ok(many.every((r, i) => (JSON.parse(r.body) as { body: string }).body === `m${i}`), '20 concurrent streams answered');
    const metrics = await (await fetch(h.metricsUrl)).text();
    t.match(metrics, /istio_requests_total\{[^}]*request_protocol="grpc"[^}]*grpc_response_status="5"/);
    t.match(metrics, /istio_requests_total\{[^}]*request_protocol="grpc"[^}]*grpc_response_status="12"[^}]*response_flags="no_route"/);
  });

  await t.test('HTTP/2 to an HTTP service (detected by the preface)', async (t) => {
    const s = await h.h2(VIP);
    t.teardown(() => s.close());
    const r = await h2Request(s, { ':method': 'GET', ':path': '/h2' });
    t.equal(r.headers[':status'], 200);
  });

  await t.test('opaque TCP by appProtocol', async (t) => {
    const st = await h.tunnel('10.96.0.20:7000');
    const out = await new Promise<string>((resolve) => {
      let got = '';
      st.on('data', (c: Buffer) => { got += c.toString(); if (got === 'ping-pong') { resolve(got); st.destroy(); } });
      st.write('ping-');
      st.write('pong');
    });
    t.equal(out, 'ping-pong', 'bytes pass unchanged to the endpoint');
  });

  await t.test('upgrade (WebSocket style) passes through', async (t) => {
    const st = await h.tunnel(VIP);
    const got = await new Promise<string>((resolve) => {
      let out = '';
      st.on('data', (c: Buffer) => {
        out += c.toString();
        if (out.includes('\r\n\r\n') && !out.includes('hello-ws')) st.write('hello-ws');
        if (out.includes('hello-ws')) { resolve(out); st.destroy(); }
      });
      st.write(`GET /ws HTTP/1.1\r\nhost: echo.demo\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n`);
    });
    t.match(got, /^HTTP\/1.1 101 Switching Protocols/);
    t.match(got, /hello-ws$/, 'bytes after the upgrade flow both ways');
  });

  await t.test('request smuggling and malformed HTTP/1 get a 400 and the connection closed', async (t) => {
    const smuggle = await raw(await h.tunnel(VIP), 'POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nhost: x\r\n\r\n');
    t.match(smuggle, /^HTTP\/1.1 400 Bad Request/, 'Content-Length with Transfer-Encoding is refused');
    t.notMatch(smuggle, /"url":"\/admin"/, 'the smuggled request never reaches the backend');
    const badChunk = await raw(await h.tunnel(VIP), 'POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n');
    t.match(badChunk, /^HTTP\/1.1 400 Bad Request/, 'invalid chunk size');
    const badHeader = await raw(await h.tunnel(VIP), 'GET / HTTP/1.1\r\nhost: x\r\nbad header: v\r\n\r\n');
    t.match(badHeader, /^HTTP\/1.1 400 Bad Request/, 'a space in a header name');
    const big = await raw(await h.tunnel(VIP), `GET / HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`);
    t.match(big, /^HTTP\/1.1 431 Request Header Fields Too Large/, 'oversized headers');
    t.equal((await h.request(VIP, { path: '/still-fine' })).status, 200, 'everyone else is still served');
  });

  await t.test('an upstream that resets mid-response: the client sees a broken response, not a clean one', async (t) => {
    const st = await h.tunnel(VIP);
    const r = await new Promise<{ aborted: boolean; body: string }>((resolve) => {
      const req = http.request({ createConnection: () => st, path: '/reset-mid-response', headers: { host: 'echo.demo' } }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => { body += c.toString(); });
        res.on('aborted', () => resolve({ aborted: true, body }));
        res.on('end', () => resolve({ aborted: false, body }));
        res.on('error', () => resolve({ aborted: true, body }));
      });
      req.on('error', () => resolve({ aborted: true, body: '' }));
      req.end();
    });
    t.ok(r.aborted, 'the response is cut, as the upstream cut it');
    t.equal((await h.request(VIP, { path: '/after-reset' })).status, 200, 'the waypoint keeps serving');
  });
});
