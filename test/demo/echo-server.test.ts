import t from 'tap';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { EchoServer } from '../../lab/demo/echo-server.ts';
import { GRPC_ECHO_PATH } from '../../lab/demo/echo-handler.ts';
import { curl, h1, h2, ID, memLogger, startEcho } from './helpers.ts';

t.test('HTTP/1.1: echoes identity, method, path and the headers received', async (t) => {
  const s = await startEcho(t);
  const r = await h1(s.port, '/hello?x=1', { method: 'POST', headers: { 'x-trace': 'abc' }, body: 'twelve bytes' });
  t.equal(r.status, 200);
  t.equal(r.headers['x-rondo-pod'], ID.pod);
  t.equal(r.headers['x-rondo-version'], ID.version);
  const j = JSON.parse(r.body.toString()) as Record<string, unknown>;
  t.match(j, { ...ID, method: 'POST', path: '/hello?x=1', protocol: 'HTTP/1.1', authority: `127.0.0.1:${s.port}`,
    headers: { 'x-trace': 'abc' }, remoteAddress: '127.0.0.1', bodyBytes: 12 });
});

t.test('HTTP/1.1 keep-alive: several requests share one connection', async (t) => {
  const s = await startEcho(t);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  const ports = new Set<string>();
  for (let i = 0; i < 3; i++) {
    const r = await h1(s.port, '/k', { agent });
    ports.add(String((JSON.parse(r.body.toString()) as { remotePort: number }).remotePort));
    t.equal(r.headers['connection'], 'keep-alive');
  }
  t.equal(ports.size, 1, 'same client port every time');
});

t.test('curl over HTTP/1.1 and with --http2-prior-knowledge on the same port', async (t) => {
  const s = await startEcho(t);
  const a = JSON.parse(await curl([`http://127.0.0.1:${s.port}/one`])) as Record<string, unknown>;
  t.match(a, { protocol: 'HTTP/1.1', path: '/one', pod: ID.pod });
  const b = JSON.parse(await curl(['--http2-prior-knowledge', '-H', 'x-who: curl', `http://127.0.0.1:${s.port}/two`])) as Record<string, unknown>;
  t.match(b, { protocol: 'HTTP/2', path: '/two', pod: ID.pod, headers: { 'x-who': 'curl' } });
  t.notOk(Object.keys(b['headers'] as object).some((k) => k.startsWith(':')), 'pseudo-headers are not echoed as headers');
});

t.test('h2c prior knowledge with node http2', async (t) => {
  const s = await startEcho(t);
  const r = await h2(s.port, '/h2path', { 'x-a': '1' });
  t.equal(r.headers[':status'], 200);
  t.equal(r.headers['x-rondo-pod'], ID.pod);
  t.match(JSON.parse(r.body.toString()), { protocol: 'HTTP/2', path: '/h2path', method: 'GET', headers: { 'x-a': '1' } });
});

t.test('GET /bytes/1024 returns exactly 1024 bytes on both protocols; --body-bytes fixes every answer', async (t) => {
  const s = await startEcho(t);
  const a = await h1(s.port, '/bytes/1024');
  t.equal(a.body.length, 1024);
  t.equal(a.headers['content-length'], '1024');
  t.equal((await h2(s.port, '/bytes/1024')).body.length, 1024);
  t.equal((await curl([`http://127.0.0.1:${s.port}/bytes/7`])).length, 7);
  const f = await startEcho(t, { bodyBytes: 100 });
  t.equal((await h1(f.port, '/anything')).body.length, 100);
});

type EchoReply = Record<string, unknown> & { grpcRequest?: unknown };
function grpcClient(t: { teardown(fn: () => unknown): void }, port: number) {
  const json = (v: unknown) => Buffer.from(JSON.stringify(v));
  const parse = (b: Buffer) => JSON.parse(b.toString()) as EchoReply;
  const Ctor = grpc.makeGenericClientConstructor({
    Echo: { path: GRPC_ECHO_PATH, requestStream: false, responseStream: false,
      requestSerialize: json, requestDeserialize: parse, responseSerialize: json, responseDeserialize: parse },
    Nope: { path: '/rondo.demo.Echo/Nope', requestStream: false, responseStream: false,
      requestSerialize: json, requestDeserialize: parse, responseSerialize: json, responseDeserialize: parse },
  }, 'Echo');
  const client = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  t.teardown(() => client.close());
  const call = (method: 'Echo' | 'Nope', req: unknown, md = new grpc.Metadata()) =>
    new Promise<{ err: grpc.ServiceError | null; res: EchoReply | undefined; headers: grpc.Metadata | undefined }>((resolve) => {
      let headers: grpc.Metadata | undefined;
      const fn = (client as unknown as Record<string, (r: unknown, m: grpc.Metadata, cb: (e: grpc.ServiceError | null, r?: EchoReply) => void) => grpc.ClientUnaryCall>)[method]!;
      const c = fn.call(client, req, md, (err, res) => resolve({ err, res, headers }));
      c.on('metadata', (m: grpc.Metadata) => { headers = m; });
    });
  return call;
}

t.test('gRPC unary Echo with grpc-js, JSON messages, identity in response metadata', async (t) => {
  const s = await startEcho(t);
  const call = grpcClient(t, s.port);
  const ok = await call('Echo', { hello: 'world' });
  t.equal(ok.err, null);
  t.match(ok.res, { ...ID, protocol: 'HTTP/2', path: GRPC_ECHO_PATH, method: 'POST', grpcRequest: { hello: 'world' } });
  t.same(ok.headers?.get('x-rondo-pod'), [ID.pod]);
  const nope = await call('Nope', {});
  t.equal(nope.err?.code, grpc.status.UNIMPLEMENTED);
  const md = new grpc.Metadata();
  md.set('x-demo-fail-status', '503');
  const failed = await call('Echo', {}, md);
  t.equal(failed.err?.code, grpc.status.UNAVAILABLE, 'an injected 503 is gRPC UNAVAILABLE');
  s.setBehaviour({ failRate: 1, failStatus: 504, latencyMs: 0 });
  t.equal((await call('Echo', {})).err?.code, grpc.status.DEADLINE_EXCEEDED);
});

t.test('fail rate is deterministic with an injected random source', async (t) => {
  const draws = [0.05, 0.5, 0.15, 0.95];
  let i = 0;
  const s = await startEcho(t, { behaviour: { failRate: 0.2, failStatus: 503, latencyMs: 0 }, random: () => draws[i++ % draws.length]! });
  const statuses: number[] = [];
  for (let k = 0; k < 4; k++) statuses.push((await h1(s.port, '/')).status);
  t.same(statuses, [503, 200, 503, 200]);
  const failed = await h1(s.port, '/bytes/10');
  t.equal(failed.status, 503, 'fixed-size answers fail too');
  t.match(JSON.parse(failed.body.toString()), { pod: ID.pod, error: 'injected failure', status: 503 });
});

t.test('latency switch delays answers through the injected delay', async (t) => {
  const asked: number[] = [];
  const s = await startEcho(t, { behaviour: { failRate: 0, failStatus: 503, latencyMs: 250 }, delay: (ms) => { asked.push(ms); return Promise.resolve(); } });
  t.equal((await h1(s.port, '/')).status, 200);
  t.equal((await h1(s.port, '/bytes/4', { headers: { 'x-demo-delay-ms': '7' } })).status, 200);
  await h2(s.port, '/');
  t.same(asked, [250, 7, 250]);
});

t.test('a real small delay is observed by the client', async (t) => {
  const s = await startEcho(t);
  const t0 = performance.now();
  const r = await h1(s.port, '/', { headers: { 'x-demo-delay-ms': '60' } });
  t.equal(r.status, 200);
  t.ok(performance.now() - t0 >= 55, 'answer took at least the delay');
});

t.test('POST /_demo/config switches behaviour at runtime and rejects bad config alone', async (t) => {
  const s = await startEcho(t);
  t.equal((await h1(s.port, '/')).status, 200);
  const set = await h1(s.port, '/_demo/config', { method: 'POST', body: JSON.stringify({ failRate: 1, failStatus: 500 }) });
  t.same(JSON.parse(set.body.toString()), { failRate: 1, failStatus: 500, latencyMs: 0 });
  t.equal((await h1(s.port, '/')).status, 500);
  t.equal((await h2(s.port, '/')).headers[':status'], 500);
  t.equal((await h1(s.port, '/', { headers: { 'x-demo-fail-status': '200' } })).status, 200);
  const bad = await h1(s.port, '/_demo/config', { method: 'POST', body: '{"failRate": 3}' });
  t.equal(bad.status, 400);
  t.match(JSON.parse(bad.body.toString()), { error: /failRate must be a number between 0 and 1/ });
  const notJson = await h1(s.port, '/_demo/config', { method: 'POST', body: '{' });
  t.match(JSON.parse(notJson.body.toString()), { error: /not valid JSON/ });
  t.same(JSON.parse((await h1(s.port, '/_demo/config')).body.toString()), { failRate: 1, failStatus: 500, latencyMs: 0 }, 'bad config left the last good one');
  t.equal((await h1(s.port, '/_demo/config', { method: 'DELETE' })).status, 405);
  t.equal((await h1(s.port, '/_demo/nothing')).status, 404);
  t.equal((await h1(s.port, '/', { headers: { 'x-demo-delay-ms': 'later' } })).status, 400);
});

function raw(port: number, bytes: Buffer | string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => sock.write(bytes));
    const chunks: Buffer[] = [];
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    sock.on('error', reject);
    sock.setTimeout(5000, () => sock.destroy(new Error('server did not close the bad connection')));
  });
}

t.test('garbage and oversized headers get a clean 400/431 and close, and the server keeps serving', async (t) => {
  const s = await startEcho(t, { maxHeaderSize: 1024 });
  t.match(await raw(s.port, Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x00, 0x0d, 0x0a, 0x0d, 0x0a])), /^HTTP\/1\.1 400 /);
  t.match(await raw(s.port, 'GARBAGE\r\n\r\n'), /^HTTP\/1\.1 400 /);
  t.match(await raw(s.port, `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(4096)}\r\n\r\n`), /^HTTP\/1\.1 431 /);
  // HTTP/2 preface followed by rubbish: the session is torn down, nothing crashes.
  const out = await raw(s.port, Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.alloc(64, 0xee)]));
  t.type(out, 'string');
  t.equal((await h1(s.port, '/')).status, 200, 'still serving');
  t.equal((await h2(s.port, '/')).headers[':status'], 200, 'still serving h2');
});

t.test('an HTTP/1.1 client dripping headers slowly gets 408 and is closed', async (t) => {
  const s = await startEcho(t, { headersTimeoutMs: 200 });
  const sock = net.connect(s.port, '127.0.0.1', () => sock.write('GET / HTTP/1.1\r\nHost: x\r\n'));
  sock.on('error', () => {});
  const drip = setInterval(() => { if (sock.writable) sock.write('x-a: b\r\n'); }, 40);
  t.teardown(() => { clearInterval(drip); sock.destroy(); });
  let out = '';
  sock.on('data', (c: Buffer) => { out += c.toString('latin1'); });
  await once(sock, 'close');
  t.match(out, /^HTTP\/1\.1 408 /);
});

t.test('a connection that never speaks is closed after the sniff timeout', async (t) => {
  const s = await startEcho(t, { sniffTimeoutMs: 50 });
  const sock = net.connect(s.port, '127.0.0.1');
  sock.on('error', () => {});
  await once(sock, 'close');
  t.pass('closed by the server');
});

t.test('close() ends idle keep-alive and HTTP/2 connections, is idempotent, and frees the port', async (t) => {
  const s = await EchoServer.create({ port: 0, host: '127.0.0.1', identity: ID, log: memLogger() });
  const agent = new http.Agent({ keepAlive: true });
  t.teardown(() => agent.destroy());
  await h1(s.port, '/', { agent });
  const http2 = await import('node:http2');
  const session = http2.connect(`http://127.0.0.1:${s.port}`);
  session.on('error', () => {});
  await new Promise<void>((resolve) => { const st = session.request({ ':path': '/' }); st.resume(); st.on('end', resolve); });
  const goaway = once(session, 'goaway');
  const t0 = performance.now();
  await Promise.all([s.close(5000), s.close(5000)]);
  t.ok(performance.now() - t0 < 4000, 'drained without waiting for the deadline');
  await goaway;
  t.pass('HTTP/2 client got GOAWAY');
  const again = await EchoServer.create({ port: s.port, host: '127.0.0.1', identity: ID, log: memLogger() });
  await again.close();
});

t.test('close() lets an in-flight HTTP/1.1 request finish with connection: close', async (t) => {
  const s = await EchoServer.create({ port: 0, host: '127.0.0.1', identity: ID, log: memLogger() });
  const agent = new http.Agent({ keepAlive: true });
  t.teardown(() => agent.destroy());
  const pending = h1(s.port, '/slow', { agent, headers: { 'x-demo-delay-ms': '100' } });
  await new Promise((r) => setTimeout(r, 30));
  const closed = s.close(5000);
  const r = await pending;
  t.equal(r.status, 200);
  t.equal(r.headers['connection'], 'close');
  await closed;
  t.pass('server closed after the answer');
});

t.test('binding a taken port fails loudly with a code', async (t) => {
  const s = await startEcho(t);
  await t.rejects(EchoServer.create({ port: s.port, host: '127.0.0.1', identity: ID, log: memLogger() }), { code: 'RONDO_E_LISTEN', message: /is the port taken/ });
});
