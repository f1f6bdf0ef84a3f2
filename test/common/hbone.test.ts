import t from 'tap';
import net from 'node:net';
import tls from 'node:tls';
import http2 from 'node:http2';
import { createHash, randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { createLogger } from '../../common/log.ts';
import {
  HboneClientPool, HboneServer, HboneConnectError, acceptTunnel, refuseTunnel, pump, formatAuthority,
} from '../../common/hbone.ts';
import type { InboundTunnel } from '../../common/hbone.ts';
import { createTestPki } from './hbone-fixtures.ts';
import { ManualClock } from '../../common/clock.ts';

const log = createLogger('test', { write: () => true });
const pki = createTestPki();
t.teardown(() => pki.cleanup());
const serverLeaf = pki.leaf('demo', 'server');
const clientLeaf = pki.leaf('demo', 'client');
const serverCreds = { keyPem: serverLeaf.keyPem, chain: [serverLeaf.certPem], trustBundle: [pki.caPem] };

// The pod behind the agent: echoes, and after the client half-closes writes "bye" then ends
// (proves half-close travels through the tunnel without closing the reply direction).
const echo = net.createServer({ allowHalfOpen: true }, (s) => {
  s.on('data', (d) => s.write(d));
  s.on('end', () => s.end('bye'));
  s.on('error', () => undefined);
});
const seen: InboundTunnel[] = [];
let server: HboneServer;

function collect(s: Duplex): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('end', () => resolve(Buffer.concat(parts)));
    s.on('error', reject);
  });
}

t.before(async () => {
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  server = await HboneServer.create({
    log, host: '127.0.0.1', port: 0,
    credentialsFor: (dst) => (dst.ip === '127.0.0.1' ? serverCreds : undefined),
    onTunnel: (tun) => {
      seen.push(tun);
      if (tun.target.port !== (echo.address() as net.AddressInfo).port) { refuseTunnel(tun.stream, 403, 'no such workload here'); return; }
      const up = net.connect({ host: tun.target.ip, port: tun.target.port, allowHalfOpen: true, noDelay: true });
      up.once('connect', () => { acceptTunnel(tun.stream); void pump(tun.stream, up); });
      up.once('error', () => refuseTunnel(tun.stream, 503, 'upstream refused'));
    },
  });
});
t.teardown(async () => { await server.close(0); echo.close(); });

const echoAuthority = (): string => formatAuthority('127.0.0.1', (echo.address() as net.AddressInfo).port);
const req = (over: Partial<Parameters<HboneClientPool['connect']>[0]> = {}): Parameters<HboneClientPool['connect']>[0] => ({
  connectTo: { ip: '127.0.0.1', port: server.address.port },
  authority: echoAuthority(),
  expectedIdentity: serverLeaf.identity,
  sourceIdentity: clientLeaf.identity,
  secureContext: clientLeaf.ctx,
  ...over,
});

t.test('CONNECT echo through the pool, identities and trace headers carried', async (t) => {
  const pool = new HboneClientPool({ log });
  t.teardown(() => pool.close());
  const stream = await pool.connect(req({ headers: { traceparent: '00-aa-bb-01', baggage: 'k8s.namespace.name=demo' } }));
  const got = collect(stream);
  stream.end('hello');
  t.equal((await got).toString(), 'hellobye');
  const last = seen.at(-1)!;
  t.equal(last.peerIdentity, clientLeaf.identity, 'server saw the client SPIFFE ID');
  t.equal(last.headers['traceparent'], '00-aa-bb-01');
  t.equal(last.headers['baggage'], 'k8s.namespace.name=demo');
  t.same(last.target, { ip: '127.0.0.1', port: (echo.address() as net.AddressInfo).port });
});

t.test('many streams share one session; 5 MiB each way arrives intact', async (t) => {
  const pool = new HboneClientPool({ log });
  t.teardown(() => pool.close());
  const before = server.sessionCount;
  const results = await Promise.all(Array.from({ length: 40 }, async (_, i) => {
    const s = await pool.connect(req());
    const got = collect(s);
    s.end(`m${i}`);
    return (await got).toString();
  }));
  t.same(results, Array.from({ length: 40 }, (_, i) => `m${i}bye`));
  t.equal(pool.sessionCount, 1, 'one client session');
  t.equal(server.sessionCount, before + 1, 'one server session');

  const big = randomBytes(5 * 1024 * 1024);
  const s = await pool.connect(req());
  const got = collect(s);
  s.end(big);
  const back = await got;
  t.equal(back.length, big.length + 3);
  t.equal(createHash('sha256').update(back.subarray(0, big.length)).digest('hex'), createHash('sha256').update(big).digest('hex'));
});

t.test('a server presenting another SPIFFE ID is refused', async (t) => {
  const pool = new HboneClientPool({ log });
  t.teardown(() => pool.close());
  await t.rejects(pool.connect(req({ expectedIdentity: 'spiffe://cluster.local/ns/demo/sa/other' })), { code: 'RONDO_E_HBONE_PEER_IDENTITY' });
  t.equal(pool.sessionCount, 0, 'failed session not pooled');
});

t.test('clients without a certificate or with an untrusted one are refused', async (t) => {
  const before = server.refused.get('tls_handshake') ?? 0;
  const noCert = tls.createSecureContext({ ca: pki.caPem, minVersion: 'TLSv1.3' });
  const pool = new HboneClientPool({ log });
  t.teardown(() => pool.close());
  await t.rejects(pool.connect(req({ secureContext: noCert, sourceIdentity: 'none' })), HboneConnectError);
  const foreign = pki.leaf('demo', 'client', pki.otherCa());
  const foreignCtx = tls.createSecureContext({ key: foreign.keyPem, cert: foreign.certPem, ca: pki.caPem, minVersion: 'TLSv1.3' });
  await t.rejects(pool.connect(req({ secureContext: foreignCtx, sourceIdentity: foreign.identity })), HboneConnectError);
  t.ok((server.refused.get('tls_handshake') ?? 0) >= before + 2, 'both handshakes counted as refused');
});

t.test('a refused CONNECT reports status and reason', async (t) => {
  const pool = new HboneClientPool({ log });
  t.teardown(() => pool.close());
  const err = await pool.connect(req({ authority: '127.0.0.1:1' })).then(() => undefined, (e: unknown) => e);
  t.type(err, HboneConnectError);
  t.equal((err as HboneConnectError).status, 403);
  t.match((err as Error).message, /no such workload here/);
  // The session survives a refused stream.
  const s = await pool.connect(req());
  const got = collect(s);
  s.end('again');
  t.equal((await got).toString(), 'againbye');
  t.equal(pool.sessionCount, 1);
});

t.test('pool reuses a session, closes it when idle, and redials after', async (t) => {
  const clock = new ManualClock();
  const pool = new HboneClientPool({ log, clock, idleTimeoutMs: 1000 });
  t.teardown(() => pool.close());
  for (let i = 0; i < 3; i++) {
    const s = await pool.connect(req());
    const got = collect(s);
    s.end('x');
    await got;
    await new Promise((r) => s.once('close', r));
  }
  t.equal(pool.sessionCount, 1);
  t.same(clock.pending(), [{ delayMs: 1000, dueInMs: 1000, repeat: false, refed: false }], 'one idle timer, re-armed by the last stream, unref’d');
  clock.advance(999);
  t.equal(pool.sessionCount, 1, 'not idle long enough yet');
  clock.advance(1);
  t.equal(pool.sessionCount, 0, 'idle session dropped');
  const s = await pool.connect(req());
  const got = collect(s);
  s.end('y');
  t.equal((await got).toString(), 'ybye');
  t.equal(pool.sessionCount, 1);
});

t.test('bad requests are refused without disturbing other streams', async (t) => {
  const session = http2.connect(`https://127.0.0.1:${server.address.port}`, {
    createConnection: () => tls.connect({ host: '127.0.0.1', port: server.address.port, secureContext: clientLeaf.ctx, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined }),
  });
  t.teardown(() => session.destroy());
  // A long-lived tunnel open on the same session the whole time.
  const live = session.request({ ':method': 'CONNECT', ':authority': echoAuthority() });
  await new Promise((r) => live.once('response', r));
  const status = (h: http2.OutgoingHttpHeaders): Promise<[number, string | undefined]> => new Promise((resolve) => {
    const s = session.request(h, { endStream: false });
    s.on('error', () => undefined);
    s.once('response', (rh) => { resolve([Number(rh[':status']), rh['rondo-reason'] as string | undefined]); s.resume(); s.end(); });
  });
  const [getStatus] = await status({ ':method': 'GET', ':path': '/', ':scheme': 'https', ':authority': 'x' });
  t.equal(getStatus, 405);
  for (const bad of ['nope', '10.0.0.1', '10.0.0.1:99999', 'host.example:80', '[::1:80', '1.2.3.4:8a']) {
    const [st, reason] = await status({ ':method': 'CONNECT', ':authority': bad });
    t.equal(st, 400, `authority ${bad}`);
    t.match(reason ?? '', /expected <ip>:<port>/);
  }
  // Garbage after the TLS handshake on another connection, and garbage instead of TLS.
  const raw = tls.connect({ host: '127.0.0.1', port: server.address.port, secureContext: clientLeaf.ctx, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined });
  raw.on('error', () => undefined);
  raw.resume();
  await new Promise((r) => raw.once('secureConnect', r));
  raw.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n' + 'z'.repeat(100));
  await new Promise((r) => raw.once('close', r));
  const plain = net.connect(server.address.port, '127.0.0.1');
  plain.on('error', () => undefined);
  plain.resume();
  plain.write('hello, this is not TLS\r\n\r\n');
  await new Promise((r) => plain.once('close', r));
  t.ok((server.refused.get('bad_authority') ?? 0) >= 6);
  t.ok((server.refused.get('not_connect') ?? 0) >= 1);
  // The long-lived tunnel still works.
  const got = collect(live);
  live.end('still here');
  t.equal((await got).toString(), 'still herebye');
});

t.test('oversized request headers are refused', async (t) => {
  const session = http2.connect(`https://127.0.0.1:${server.address.port}`, {
    createConnection: () => tls.connect({ host: '127.0.0.1', port: server.address.port, secureContext: clientLeaf.ctx, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined }),
  });
  session.on('error', () => undefined);
  t.teardown(() => session.destroy());
  const s = session.request({ ':method': 'CONNECT', ':authority': echoAuthority(), 'x-big': 'a'.repeat(32 * 1024) });
  const outcome = await new Promise<string>((resolve) => {
    s.on('error', (e: Error) => resolve(`error:${(e as { code?: string }).code ?? e.message}`));
    s.once('response', (h) => resolve(`status:${String(h[':status'])}`));
    s.once('close', () => resolve(`closed:${s.rstCode}`));
  });
  t.notMatch(outcome, /^status:200/, `refused (${outcome})`);
});

t.test('a client reset mid-stream resets the pod connection', async (t) => {
  const up = net.createServer({ allowHalfOpen: true });
  let gotData!: () => void;
  const podGotData = new Promise<void>((r) => { gotData = r; });
  const upClosed = new Promise<string>((resolve) => up.on('connection', (s) => {
    s.once('data', () => gotData());
    s.on('data', () => undefined);
    s.on('error', (e: Error) => resolve((e as { code?: string }).code ?? 'error'));
    s.on('end', () => resolve('end'));
  }));
  await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
  t.teardown(() => up.close());
  const srv = await HboneServer.create({
    log, host: '127.0.0.1', port: 0, credentialsFor: () => serverCreds,
    onTunnel: (tun) => {
      const c = net.connect({ host: tun.target.ip, port: tun.target.port, allowHalfOpen: true });
      c.once('connect', () => { acceptTunnel(tun.stream); void pump(tun.stream, c); });
    },
  });
  t.teardown(() => srv.close(0));
  const pool = new HboneClientPool({ log });
  t.teardown(() => pool.close());
  const s = await pool.connect(req({ connectTo: { ip: '127.0.0.1', port: srv.address.port }, authority: formatAuthority('127.0.0.1', (up.address() as net.AddressInfo).port) }));
  s.write('partial');
  await podGotData; // the pump is running end to end: the reset now has to travel through it
  s.on('error', () => undefined);
  s.destroy(new Error('client gave up'));
  t.equal(await upClosed, 'ECONNRESET', 'pod sees a reset, not a clean end');
  t.equal(pool.sessionCount, 1, 'the session survives the reset');
});

t.test('a client that cancels a stream after its data (END_STREAM then RST_STREAM) still finishes the pump and closes the pod socket', async (t) => {
  // The FIN reaches the pod socket first (end()), then the reset: resetting a socket whose
  // write side is shut fails with EINVAL and Node never closed it (fd and tracking leak).
  let upSocket: net.Socket | undefined;
  let pumped: Promise<unknown> | undefined;
  const srv = await HboneServer.create({
    log, host: '127.0.0.1', port: 0, credentialsFor: () => serverCreds,
    onTunnel: (tun) => {
      const c = net.connect({ host: tun.target.ip, port: tun.target.port, allowHalfOpen: true });
      upSocket = c;
      c.once('connect', () => { acceptTunnel(tun.stream); pumped = pump(tun.stream, c); });
    },
  });
  t.teardown(() => srv.close(0));
  const pool = new HboneClientPool({ log });
  t.teardown(() => pool.close());
  const s = await pool.connect(req({ connectTo: { ip: '127.0.0.1', port: srv.address.port }, authority: echoAuthority() }));
  s.on('error', () => undefined);
  const first = await new Promise<string>((resolve) => { s.once('data', (d: Buffer) => resolve(d.toString())); s.write('half'); });
  t.equal(first, 'half');
  s.close(http2.constants.NGHTTP2_CANCEL);
  const upClosed = new Promise<void>((resolve) => { if (upSocket?.closed === true) resolve(); else upSocket?.once('close', () => resolve()); });
  // A regression hangs here (and tap's test timeout reports it); no wall-clock race.
  await upClosed;
  await pumped;
  t.pass('pod socket closed and pump resolved');
});

t.test('a renewed client certificate opens a new session; streams on the old one keep flowing', async (t) => {
  const pool = new HboneClientPool({ log });
  t.teardown(() => pool.close());
  const old = await pool.connect(req());
  const oldGot = collect(old);
  old.write('before-');
  const renewed = pki.leaf('demo', 'client');
  const fresh = await pool.connect(req({ secureContext: renewed.ctx }));
  t.equal(pool.sessionCount, 2, 'new certificate, new session');
  const freshGot = collect(fresh);
  fresh.end('new');
  t.equal((await freshGot).toString(), 'newbye');
  old.end('after');
  t.equal((await oldGot).toString(), 'before-afterbye', 'open stream on the old session untouched');
  t.equal(seen.at(-1)?.peerIdentity, clientLeaf.identity);
});

t.test('close() drains: sessions get GOAWAY, open streams may finish before the deadline', async (t) => {
  const srv = await HboneServer.create({
    log, host: '127.0.0.1', port: 0, credentialsFor: () => serverCreds,
    onTunnel: (tun) => {
      const up = net.connect({ host: tun.target.ip, port: tun.target.port, allowHalfOpen: true });
      up.once('connect', () => { acceptTunnel(tun.stream); void pump(tun.stream, up); });
    },
  });
  const port = srv.address.port;
  const pool = new HboneClientPool({ log });
  t.teardown(() => pool.close());
  const s = await pool.connect(req({ connectTo: { ip: '127.0.0.1', port } }));
  const got = collect(s);
  const closing = srv.close(2000);
  s.end('finishing');
  t.equal((await got).toString(), 'finishingbye', 'in-flight stream completed during drain');
  await closing;
  await t.rejects(pool.connect(req({ connectTo: { ip: '127.0.0.1', port } })), HboneConnectError, 'no new connections after drain');
});

t.test('open(): bytes written before the 200 reach the pod; a refusal rejects established with its status', async (t) => {
  const pool = new HboneClientPool({ log });
  t.teardown(() => pool.close());
  const { stream, established } = await pool.open(req());
  let answered = false;
  void established.then(() => { answered = true; });
  const got = collect(stream);
  stream.end('early');
  t.equal(answered, false, 'written before the server answered');
  await established;
  t.equal((await got).toString(), 'earlybye', 'early bytes and half-close went through intact');

  const refused = await pool.open(req({ authority: formatAuthority('127.0.0.1', 1) }));
  refused.stream.write('lost');
  const err = await refused.established.then(() => undefined, (e: unknown) => e);
  t.ok(err instanceof HboneConnectError);
  t.equal((err as HboneConnectError).status, 403);
  t.equal((err as HboneConnectError).code, 'RONDO_E_HBONE_REFUSED');
});
