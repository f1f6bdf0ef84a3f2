import t from 'tap';
import type { Test } from 'tap';
import https from 'node:https';
import { WebSocketServer } from 'ws';
import type WebSocket from 'ws';
import { Registry } from 'prom-client';
import { PushClient } from '../../common/push-client.ts';
import type { ProxyConfig } from '../../common/proxy-config.ts';
import type { Rejection } from '../../common/wire.ts';
import { Backoff } from '../../common/backoff.ts';
import { createLogger } from '../../common/log.ts';
import { selfSignedLocalhost } from '../controller/fixtures/tls.ts';

const quiet = createLogger('test', { write: () => true }, 'error');
// A real CA certificate: the push client refuses a trust bundle it could not load.
const mesh = { trustDomain: 'cluster.local', trustBundle: [selfSignedLocalhost().certPem], rootNamespace: 'rondo-system' };

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

const svc = (name: string, vip: string): { key: string; value: unknown } => ({
  key: `demo/${name}`, value: { namespace: 'demo', name, hostname: `${name}.demo.svc.cluster.local`, vips: [vip], ports: [], endpoints: [] },
});

/** A scripted controller that sends `script` messages one by one, each after the previous answer; resolves with the answers. */
async function scripted(t: Test, script: Record<string, unknown>[]) {
  const answers: Record<string, unknown>[] = [];
  let done!: () => void;
  const finished = new Promise<void>((r) => { done = r; });
  const ctl = await fakeController(t, (ws) => {
    void next(ws).then(async () => {
      for (const m of script) {
        ws.send(JSON.stringify(m));
        answers.push(await next(ws));
      }
      done();
    });
  });
  return { ctl, answers, finished };
}

t.test('the ACK/NACK comes after onConfig: what the proxy refuses is NACKed, and it keeps its previous value', async (t) => {
  const h = await scripted(t, [
    { type: 'snapshot', version: 1, nonce: 'n1', mesh, resources: { services: [svc('web', '10.96.0.1')] } },
    { type: 'delta', version: 2, nonce: 'n2', upserts: { services: [svc('web', '10.96.0.9'), svc('api', '10.96.0.2')] }, removes: {} },
    { type: 'delta', version: 3, nonce: 'n3', upserts: { services: [svc('db', '10.96.0.3')] }, removes: {} },
  ]);
  const seen: { version: number; prev: number | undefined; kind: string }[] = [];
  const c = new PushClient({
    url: h.ctl.url, token: 'x', proxy: { kind: 'node-agent', node: 'node-1' }, caPems: [h.ctl.ca], log: quiet,
    onConfig: async (cfg, prev, kind): Promise<Rejection[]> => {
      seen.push({ version: cfg.version, prev: prev?.version, kind });
      await new Promise((r) => setImmediate(r));
      // The proxy cannot take the new web (say, its listener failed): it keeps the old one.
      return cfg.version === 2 ? [{ type: 'services', key: 'demo/web', reason: 'listener for 10.96.0.9 failed' }] : [];
    },
  });
  t.teardown(() => c.close());
  c.start();
  await h.finished;
  t.same(h.answers, [
    { type: 'ack', version: 1, nonce: 'n1' },
    { type: 'nack', version: 2, nonce: 'n2', rejected: [{ type: 'services', key: 'demo/web', reason: 'listener for 10.96.0.9 failed' }] },
    { type: 'ack', version: 3, nonce: 'n3' },
  ], 'the refusal reaches the controller instead of an ACK');
  t.same(seen, [{ version: 1, prev: undefined, kind: 'snapshot' }, { version: 2, prev: 1, kind: 'delta' }, { version: 3, prev: 2, kind: 'delta' }]);
  t.equal(c.config?.version, 3);
  t.same(c.config?.services.get('demo/web')?.vips, ['10.96.0.1'], 'the refused upsert left the previous value in place');
  t.same([...c.config!.services.keys()].sort(), ['demo/api', 'demo/db', 'demo/web']);
});

t.test('snapshots and deltas sent back to back are applied one at a time, in order, and answered in order', async (t) => {
  const answers: Record<string, unknown>[] = [];
  const ctl = await fakeController(t, (ws) => {
    void next(ws).then(() => {
      ws.on('message', (d) => answers.push(JSON.parse((d as Buffer).toString('utf8')) as Record<string, unknown>));
      ws.send(JSON.stringify({ type: 'snapshot', version: 1, nonce: 'n1', mesh, resources: { services: [svc('web', '10.96.0.1')] } }));
      ws.send(JSON.stringify({ type: 'delta', version: 2, nonce: 'n2', upserts: { services: [svc('api', '10.96.0.2')] }, removes: {} }));
    });
  });
  let active = 0;
  let overlapped = false;
  const prevs: (number | undefined)[] = [];
  let release!: () => void;
  const firstHeld = new Promise<void>((r) => { release = r; });
  let entered!: () => void;
  const inFirst = new Promise<void>((r) => { entered = r; });
  const c = new PushClient({
    url: ctl.url, token: 'x', proxy: { kind: 'node-agent', node: 'node-1' }, caPems: [ctl.ca], log: quiet,
    onConfig: async (cfg: ProxyConfig, prev) => {
      overlapped ||= active > 0;
      active++;
      prevs.push(prev?.version);
      if (cfg.version === 1) { entered(); await firstHeld; }
      active--;
    },
  });
  t.teardown(() => c.close());
  c.start();
  await inFirst;
  t.same(answers, [], 'nothing answered while the first config is being applied');
  release();
  await new Promise<void>((resolve) => { const tick = (): void => void (answers.length >= 2 ? resolve() : setTimeout(tick, 5)); tick(); });
  t.notOk(overlapped, 'onConfig calls never overlap');
  t.same(prevs, [undefined, 1], 'the delta was applied on top of the snapshot');
  t.same(answers.map((a) => [a['type'], a['version']]), [['ack', 1], ['ack', 2]]);
});

t.test('a mesh config whose trust bundle cannot be loaded is NACKed as a whole; the previous mesh stays, everything else and later pushes apply', async (t) => {
  const bad = { ...mesh, trustBundle: [mesh.trustBundle[0]!, 'garbage'] };
  const h = await scripted(t, [
    { type: 'snapshot', version: 1, nonce: 'n1', mesh, resources: {} },
    { type: 'delta', version: 2, nonce: 'n2', mesh: bad, upserts: { services: [svc('web', '10.96.0.1')] }, removes: {} },
    { type: 'delta', version: 3, nonce: 'n3', upserts: { services: [svc('api', '10.96.0.2')] }, removes: {} },
  ]);
  const meshes: string[][] = [];
  const c = new PushClient({
    url: h.ctl.url, token: 'x', proxy: { kind: 'node-agent', node: 'node-1' }, caPems: [h.ctl.ca], log: quiet,
    onConfig: (cfg) => { meshes.push([...cfg.mesh.trustBundle]); },
  });
  t.teardown(() => c.close());
  c.start();
  await h.finished;
  t.match(h.answers[1], { type: 'nack', version: 2, rejected: [{ type: 'mesh', key: 'trustBundle', reason: /entry 1 is not a PEM certificate/ }] });
  t.same(h.answers[2], { type: 'ack', version: 3, nonce: 'n3' }, 'a later push applies');
  t.same(meshes, [mesh.trustBundle, mesh.trustBundle, mesh.trustBundle], 'the proxy was never handed the bad bundle');
  t.same([...c.config!.services.keys()].sort(), ['demo/api', 'demo/web'], 'the rest of the NACKed delta applied');
});

t.test('a first snapshot whose trust bundle is not a CA is NACKed and nothing is served from it', async (t) => {
  const leafLike = { ...mesh, trustBundle: ['-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'] };
  const h = await scripted(t, [
    { type: 'snapshot', version: 1, nonce: 'n1', mesh: leafLike, resources: { services: [svc('web', '10.96.0.1')] } },
    { type: 'snapshot', version: 2, nonce: 'n2', mesh, resources: { services: [svc('web', '10.96.0.1')] } },
  ]);
  const versions: number[] = [];
  const c = new PushClient({
    url: h.ctl.url, token: 'x', proxy: { kind: 'node-agent', node: 'node-1' }, caPems: [h.ctl.ca], log: quiet,
    onConfig: (cfg) => { versions.push(cfg.version); },
  });
  t.teardown(() => c.close());
  c.start();
  t.equal((await c.ready()).version, 2, 'ready only with a config it can serve');
  await h.finished;
  t.match(h.answers[0], { type: 'nack', version: 1, rejected: [{ type: 'mesh', key: 'trustBundle' }] });
  t.same(h.answers[1], { type: 'ack', version: 2, nonce: 'n2' });
  t.same(versions, [2]);
});

t.test('onConfig that throws refuses the whole config: NACKed, the previous config kept, the next one still applied', async (t) => {
  const h = await scripted(t, [
    { type: 'snapshot', version: 1, nonce: 'n1', mesh, resources: { services: [svc('web', '10.96.0.1')] } },
    { type: 'delta', version: 2, nonce: 'n2', upserts: { services: [svc('api', '10.96.0.2')] }, removes: { services: ['demo/web'] } },
    { type: 'delta', version: 3, nonce: 'n3', upserts: { services: [svc('db', '10.96.0.3')] }, removes: {} },
  ]);
  const c = new PushClient({
    url: h.ctl.url, token: 'x', proxy: { kind: 'node-agent', node: 'node-1' }, caPems: [h.ctl.ca], log: quiet,
    onConfig: (cfg) => { if (cfg.version === 2) throw new Error('index failed'); },
  });
  t.teardown(() => c.close());
  c.start();
  await h.finished;
  t.match(h.answers[1], { type: 'nack', version: 2, rejected: [{ type: 'config', key: '*', reason: /index failed/ }] });
  t.same(h.answers[2], { type: 'ack', version: 3, nonce: 'n3' });
  t.same([...c.config!.services.keys()].sort(), ['demo/db', 'demo/web'], 'v2 refused as a whole (web kept, api never taken), v3 applied on top');
});
