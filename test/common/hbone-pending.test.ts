// CONNECTs waiting for their answer are bounded per session and per server, free their slot
// when answered or reset, and a reset stream is never answered.
import t from 'tap';
import tls from 'node:tls';
import http2 from 'node:http2';
import type { ClientHttp2Session, ClientHttp2Stream, IncomingHttpHeaders } from 'node:http2';
import { createLogger } from '../../common/log.ts';
import { HboneServer, acceptTunnel, refuseTunnel } from '../../common/hbone.ts';
import type { InboundTunnel } from '../../common/hbone.ts';
import { REASON_HEADER } from '../../common/hbone-headers.ts';
import { DEFAULT_MAX_PENDING, DEFAULT_MAX_PENDING_PER_SESSION } from '../../common/hbone-server.ts';
import { createTestPki } from './hbone-fixtures.ts';

const log = createLogger('test', { write: () => true });
const pki = createTestPki();
t.teardown(() => pki.cleanup());
const serverLeaf = pki.leaf('demo', 'server');
const clientLeaf = pki.leaf('demo', 'client');
const serverCreds = { keyPem: serverLeaf.keyPem, chain: [serverLeaf.certPem], trustBundle: [pki.caPem] };

async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((r) => setTimeout(r, 10));
}

function connectSession(port: number): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const s = http2.connect(`https://127.0.0.1:${port}`, {
      createConnection: () => tls.connect({
        host: '127.0.0.1', port, secureContext: clientLeaf.ctx, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined,
      }),
    });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

function connect(s: ClientHttp2Session): { stream: ClientHttp2Stream; response: Promise<IncomingHttpHeaders> } {
  const stream = s.request({ ':method': 'CONNECT', ':authority': '127.0.0.1:9' }, { endStream: false });
  stream.on('error', () => undefined);
  return { stream, response: new Promise((r) => stream.once('response', r)) };
}

const pinged = (s: ClientHttp2Session): Promise<void> => new Promise((r, j) => { s.ping((e) => { if (e === null) r(); else j(e); }); });

t.test('documented defaults leave room for a burst of connects', (t) => {
  t.equal(DEFAULT_MAX_PENDING_PER_SESSION, 512);
  t.equal(DEFAULT_MAX_PENDING, 4096);
  t.ok(DEFAULT_MAX_PENDING_PER_SESSION < DEFAULT_MAX_PENDING);
  t.end();
});

t.test('excess CONNECTs are refused with 503 per session and per server; resets and answers free slots', async (t) => {
  // The handler holds every tunnel unanswered, as the agent does while the pod connect is in flight.
  const held: InboundTunnel[] = [];
  const refusals: string[] = [];
  const srv = await HboneServer.create({
    log, host: '127.0.0.1', port: 0, credentialsFor: () => serverCreds,
    maxPendingPerSession: 4, maxPending: 6,
    onTunnel: (tun) => { held.push(tun); },
    onRefused: (reason) => refusals.push(reason),
  });
  t.teardown(() => srv.close(0));
  const s1 = await connectSession(srv.address.port);
  t.teardown(() => { s1.destroy(); });
  const s2 = await connectSession(srv.address.port);
  t.teardown(() => { s2.destroy(); });

  const first = Array.from({ length: 4 }, () => connect(s1));
  const fifth = connect(s1);
  const h5 = await fifth.response;
  t.equal(h5[':status'], 503, 'the fifth CONNECT on one session is refused');
  t.match(String(h5[REASON_HEADER]), /too many pending CONNECTs: 4 CONNECTs .* on this session are still connecting \(limit 4\)/);
  await until(() => held.length === 4);
  t.equal(srv.pendingCount, 4);

  const second = [connect(s2), connect(s2)];
  const overServer = connect(s2);
  const h3 = await overServer.response;
  t.equal(h3[':status'], 503, 'the seventh CONNECT on the server is refused');
  t.match(String(h3[REASON_HEADER]), /6 CONNECTs are still connecting on this server \(limit 6\)/);
  t.equal(srv.pendingCount, 6);
  t.same(refusals, ['too_many_pending', 'too_many_pending'], 'each refusal counted');
  t.equal(srv.refused.get('too_many_pending'), 2);

  // Two resets on session 1 free two slots; the stream objects the handler holds are gone.
  first[0]?.stream.close(http2.constants.NGHTTP2_CANCEL);
  first[1]?.stream.close(http2.constants.NGHTTP2_CANCEL);
  await pinged(s1);
  await until(() => srv.pendingCount === 4);
  const resetTunnel = held[0]!;
  t.equal(acceptTunnel(resetTunnel.stream), false, 'a reset stream is not answered');
  t.doesNotThrow(() => refuseTunnel(resetTunnel.stream, 503, 'late'), 'refusing it is harmless too');
  t.equal(srv.pendingCount, 4, 'a late answer does not free a slot twice');

  const again = connect(s2);
  await until(() => held.length === 7);
  t.equal(srv.pendingCount, 5, 'a freed slot takes a new CONNECT');

  // Answering frees the slot as well: accept one, refuse another.
  t.equal(acceptTunnel(held[2]!.stream), true);
  t.equal((await first[2]!.response)[':status'], 200);
  refuseTunnel(held[3]!.stream, 403, 'no');
  t.equal((await first[3]!.response)[':status'], 403);
  t.equal(srv.pendingCount, 3);
  for (const c of [...second, again]) c.stream.close(http2.constants.NGHTTP2_CANCEL);
  first[2]?.stream.close(http2.constants.NGHTTP2_CANCEL);
  await pinged(s2);
  await pinged(s1);
  await until(() => srv.pendingCount === 0);
  t.pass('every slot freed');
});
