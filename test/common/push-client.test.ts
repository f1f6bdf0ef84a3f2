import t from 'tap';
import type { Test } from 'tap';
import https from 'node:https';
import { WebSocketServer } from 'ws';
import type WebSocket from 'ws';
import { Registry } from 'prom-client';
import { PushClient } from '../../common/push-client.ts';
import { Backoff } from '../../common/backoff.ts';
import { createLogger } from '../../common/log.ts';
import { selfSignedLocalhost } from '../controller/fixtures/tls.ts';

const quiet = createLogger('test', { write: () => true }, 'error');
const mesh = { trustDomain: 'cluster.local', trustBundle: ['ROOT'], rootNamespace: 'rondo-system' };

/** A scripted controller: hands each connection to `onConn`. */
async function fakeController(t: Test, onConn: (ws: WebSocket, auth: string | undefined) => void) {
  const tls = selfSignedLocalhost();
  const server = https.createServer({ key: tls.keyPem, cert: tls.certPem });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws, req) => onConn(ws, req.headers.authorization));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => { for (const c of wss.clients) c.terminate(); wss.close(); server.close(() => r()); server.closeAllConnections(); }));
  const port = (server.address() as { port: number }).port;
  return { url: `wss://127.0.0.1:${port}`, ca: tls.certPem };
}

function next(ws: WebSocket): Promise<Record<string, unknown>> {
  return new Promise((r) => ws.once('message', (d) => r(JSON.parse((d as Buffer).toString('utf8')) as Record<string, unknown>)));
}

t.test('Backoff: grows with jitter up to the ceiling, resets after success', (t) => {
  const b = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 1 });
  t.same([b.next(), b.next(), b.next(), b.next(), b.next()], [100, 200, 400, 800, 1000]);
  b.reset();
  t.equal(b.next(), 100);
  const low = new Backoff({ initialMs: 100, random: () => 0 });
  t.equal(low.next(), 50, 'jitter spreads delays down to half the base');
  t.end();
});

t.test('rejects a non-TLS controller URL', (t) => {
  t.throws(() => new PushClient({ url: 'ws://127.0.0.1:15012', token: 'x', proxy: { kind: 'node-agent', node: 'n' }, caPems: [], onConfig: () => undefined, log: quiet }), { code: 'RONDO_E_PUSH_URL' });
  t.end();
});

t.test('sends token and hello, resumes with lastVersion after a malformed message closed the connection', async (t) => {
  const hellos: Record<string, unknown>[] = [];
  const auths: (string | undefined)[] = [];
  let conn = 0;
  const ctl = await fakeController(t, (ws, auth) => {
    auths.push(auth);
    const n = ++conn;
    void next(ws).then((hello) => {
      hellos.push(hello);
      if (n === 1) {
        ws.send(JSON.stringify({ type: 'snapshot', version: 7, nonce: 'a', mesh, resources: {} }));
        void next(ws).then(() => ws.send(JSON.stringify({ type: 'delta', version: 8, nonce: 'b', upserts: { workloads: 'nope' }, removes: {} })));
      }
    });
  });
  const registry = new Registry();
  let now = 1_000_000;
  const c = new PushClient({
    url: ctl.url, token: 'secret-token', proxy: { kind: 'node-agent', node: 'node-1' }, caPems: [ctl.ca],
    onConfig: () => undefined, log: quiet, registry, backoff: { initialMs: 10, maxMs: 20 }, now: () => now,
  });
  t.teardown(() => c.close());
  c.start();
  const cfg = await c.ready();
  t.equal(cfg.version, 7);
  await new Promise<void>((resolve) => { const tick = (): void => void (hellos.length >= 2 ? resolve() : setTimeout(tick, 5)); tick(); });
  t.same(auths.slice(0, 2), ['Bearer secret-token', 'Bearer secret-token']);
  t.same(hellos[0], { type: 'hello', proxy: { kind: 'node-agent', node: 'node-1' } });
  t.same(hellos[1], { type: 'hello', proxy: { kind: 'node-agent', node: 'node-1' }, lastVersion: 7 }, 'resume from the last applied version');
  t.equal(c.config?.version, 7, 'the malformed delta was not applied');
  now += 30_000;
  const text = await registry.metrics();
  t.match(text, /rondo_push_invalid_messages_total 1/);
  t.match(text, /rondo_push_config_age_seconds 30/);
  t.match(text, /rondo_push_config_version 7/);
});

t.test('a bad resource in a delta is NACKed with its reason; the rest of the delta applies', async (t) => {
  let answer: Promise<Record<string, unknown>> | undefined;
  const ctl = await fakeController(t, (ws) => {
    void next(ws).then(async () => {
      ws.send(JSON.stringify({ type: 'snapshot', version: 1, nonce: 'n1', mesh, resources: {
        services: [{ key: 'demo/web', value: { namespace: 'demo', name: 'web', hostname: 'web.demo.svc.cluster.local', vips: ['10.96.0.1'], ports: [], endpoints: [] } }],
      } }));
      t.same(await next(ws), { type: 'ack', version: 1, nonce: 'n1' });
      answer = next(ws);
      ws.send(JSON.stringify({ type: 'delta', version: 2, nonce: 'n2', upserts: {
        services: [{ key: 'demo/db', value: { namespace: 'demo', name: 'db', hostname: 'db.demo.svc.cluster.local', vips: ['10.96.0.300'], ports: [], endpoints: [] } },
          { key: 'demo/api', value: { namespace: 'demo', name: 'api', hostname: 'api.demo.svc.cluster.local', vips: ['10.96.0.2'], ports: [], endpoints: [] } }],
      }, removes: { services: ['demo/web'] } }));
    });
  });
  const c = new PushClient({ url: ctl.url, token: 'x', proxy: { kind: 'node-agent', node: 'node-1' }, caPems: [ctl.ca], onConfig: () => undefined, log: quiet });
  t.teardown(() => c.close());
  c.start();
  await c.ready();
  await new Promise<void>((resolve) => { const tick = (): void => void (c.config?.version === 2 ? resolve() : setTimeout(tick, 5)); tick(); });
  t.same([...c.config!.services.keys()], ['demo/api'], 'remove and good upsert applied, bad one left out');
  const nack = await answer!;
  t.match(nack, { type: 'nack', version: 2, nonce: 'n2', rejected: [{ type: 'services', key: 'demo/db', reason: /vips/ }] });
});

t.test('a controller that goes silent (no pings, no messages) is dropped and reconnected to', async (t) => {
  let conns = 0;
  const ctl = await fakeController(t, (ws) => {
    conns++;
    void next(ws).then(() => ws.send(JSON.stringify({ type: 'snapshot', version: 1, nonce: 'n', mesh, resources: {} })));
  });
  const c = new PushClient({ url: ctl.url, token: 'x', proxy: { kind: 'node-agent', node: 'node-1' }, caPems: [ctl.ca], onConfig: () => undefined, log: quiet, idleTimeoutMs: 60, backoff: { initialMs: 5, maxMs: 10 } });
  t.teardown(() => c.close());
  c.start();
  await c.ready();
  await new Promise<void>((resolve) => { const tick = (): void => void (conns >= 2 ? resolve() : setTimeout(tick, 5)); tick(); });
  t.ok(conns >= 2, 'reconnected after the idle timeout');
  t.equal(c.config?.version, 1, 'config kept across the reconnect');
});

t.test('compressed binary frames are inflated and applied; one that inflates past the cap closes the connection', async (t) => {
  const { deflateSync } = await import('node:zlib');
  const { MAX_MESSAGE_BYTES } = await import('../../common/wire.ts');
  // Built once: deflating 64 MiB on every reconnect would dominate the test's run time.
  const bomb = deflateSync(Buffer.alloc(MAX_MESSAGE_BYTES + 1, 32)); // whitespace bomb: ~64 KB on the wire
  let conn = 0;
  const ctl = await fakeController(t, (ws) => {
    const n = ++conn;
    void next(ws).then(() => {
      if (n === 1) {
        ws.send(deflateSync(JSON.stringify({ type: 'snapshot', version: 3, nonce: 'z', mesh, resources: {} })), { binary: true });
        // After the ACK, drop the connection so the client reconnects and meets the bomb.
        void next(ws).then(() => ws.close());
      }
      else ws.send(bomb, { binary: true });
    });
  });
  const registry = new Registry();
  const c = new PushClient({ url: ctl.url, token: 'secret-token', proxy: { kind: 'node-agent', node: 'node-1' }, caPems: [ctl.ca], onConfig: () => undefined, log: quiet, registry, backoff: { initialMs: 10, maxMs: 20 } });
  t.teardown(() => c.close());
  c.start();
  t.equal((await c.ready()).version, 3, 'snapshot from a binary frame applied');
  await new Promise<void>((resolve) => { const tick = (): void => void (conn >= 2 ? resolve() : setTimeout(tick, 5)); tick(); });
  await new Promise<void>((resolve) => { const tick = async (): Promise<void> => (/rondo_push_invalid_messages_total 1/.test(await registry.metrics()) ? resolve() : void setTimeout(() => void tick(), 5)); void tick(); });
  t.equal(c.config?.version, 3, 'the bomb was refused, the last good config kept');
});

t.test('a pushed resource with an unknown field is NACKed naming the field; the rest of the snapshot applies', async (t) => {
  let answer: Promise<Record<string, unknown>> | undefined;
  const ctl = await fakeController(t, (ws) => {
    void next(ws).then(() => {
      answer = next(ws);
      ws.send(JSON.stringify({ type: 'snapshot', version: 1, nonce: 'n1', mesh, resources: {
        services: [
          { key: 'demo/web', value: { namespace: 'demo', name: 'web', hostname: 'web.demo.svc.cluster.local', vips: ['10.96.0.1'], ports: [], endpoints: [] } },
          { key: 'demo/typo', value: { namespace: 'demo', name: 'typo', hostname: 'typo.demo.svc.cluster.local', vips: ['10.96.0.2'], ports: [], endpoints: [], sessionAffinty: 'ClientIP' } },
        ],
      } }));
    });
  });
  const c = new PushClient({ url: ctl.url, token: 'x', proxy: { kind: 'node-agent', node: 'node-1' }, caPems: [ctl.ca], onConfig: () => undefined, log: quiet });
  t.teardown(() => c.close());
  c.start();
  const cfg = await c.ready();
  t.same([...cfg.services.keys()], ['demo/web'], 'the good service applies, the bad one is left out');
  const nack = await answer!;
  t.match(nack, { type: 'nack', version: 1, nonce: 'n1', rejected: [{ type: 'services', key: 'demo/typo', reason: /sessionAffinty/ }] });
});
