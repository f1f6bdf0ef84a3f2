import t from 'tap';
import type { Test } from 'tap';
import WebSocket from 'ws';
import { PushServer } from '../../controller/push/server.ts';
import { TokenFileAuthenticator } from '../../controller/push/auth.ts';
import { createControllerMetrics } from '../../controller/metrics.ts';
import type { ProxyView } from '../../controller/push/view.ts';
import { PushClient } from '../../common/push-client.ts';
import type { PushClientOptions } from '../../common/push-client.ts';
import { createLogger } from '../../common/log.ts';
import type { ProxyIdentity, Workload } from '../../common/wire.ts';
import { PUSH_PATH } from '../../common/wire.ts';
import { selfSignedLocalhost } from './fixtures/tls.ts';
import { ManualClock } from '../../common/clock.ts';
import type { Clock } from '../../common/clock.ts';
import type { ControllerMetrics } from '../../controller/metrics.ts';

async function pushCounts(m: ControllerMetrics): Promise<[string | number | undefined, number][]> {
  return (await m.pushes.get()).values.map((v): [string | number | undefined, number] => [v.labels['type'], v.value]).sort();
}

const quiet = createLogger('test', { write: () => true }, 'error');
const TOKEN = 'node-1-token-0123456789';
const tokens = {
  [TOKEN]: { kind: 'node-agent' as const, node: 'node-1' },
  'node-2-token-0123456789': { kind: 'node-agent' as const, node: 'node-2' },
};

function wl(name: string, ip: string): Workload {
  return {
    uid: `uid-${name}`, namespace: 'demo', name, workloadName: name, serviceAccount: 'default',
    identity: 'spiffe://cluster.local/ns/demo/sa/default', ips: [ip], node: 'node-1', labels: {}, enrolled: true,
  };
}

function view(workloads: Record<string, unknown>, trustBundle = [selfSignedLocalhost().certPem]): ProxyView {
  return {
    mesh: { trustDomain: 'cluster.local', trustBundle, rootNamespace: 'rondo-system' },
    resources: {
      workloads: new Map(Object.entries(workloads)),
      services: new Map(), authorizationPolicies: new Map(), peerAuthentications: new Map(), l7: new Map(),
    },
  };
}

type Signer = (proxy: ProxyIdentity, identity: string, csr: string) => Promise<string[]>;

async function setup(t: Test, initial: ProxyView, signCsr?: Signer, extra: { maxConcurrentSnapshots?: number; clock?: Clock; helloTimeoutMs?: number; pingIntervalMs?: number } = {}) {
  const tls = selfSignedLocalhost();
  const metrics = createControllerMetrics();
  let current = initial;
  const server = await PushServer.create({
    host: '127.0.0.1', port: 0, tls: { keyPem: tls.keyPem, chain: [tls.certPem] },
    authenticator: new TokenFileAuthenticator(tokens), viewFor: () => current, log: quiet, metrics,
    ...(signCsr !== undefined ? { signCsr } : {}), ...extra,
  });
  t.teardown(() => server.close());
  let version = 0;
  const publish = (v: ProxyView): number => { current = v; server.publish(++version); return version; };
  const url = `wss://127.0.0.1:${server.address.port}`;
  const client = (o: Partial<{ token: string; node: string; onConfig: PushClientOptions['onConfig'] }> = {}): PushClient => {
    const c = new PushClient({
      url, token: o.token ?? TOKEN, proxy: { kind: 'node-agent', node: o.node ?? 'node-1' }, caPems: [tls.certPem],
      onConfig: o.onConfig ?? (() => undefined), log: quiet, backoff: { initialMs: 20, maxMs: 100 },
    });
    t.teardown(() => c.close());
    return c;
  };
  const raw = (token = TOKEN, o: { autoPong?: boolean } = {}): Promise<WebSocket> => new Promise((resolve, reject) => {
    const ws = new WebSocket(url + PUSH_PATH, { ca: [tls.certPem], headers: { authorization: `Bearer ${token}` }, ...o });
    t.teardown(() => ws.terminate());
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
  return { server, metrics, publish, client, raw, url, tls };
}

/** Collects parsed messages from a raw socket; next() waits for the next one. */
function inbox(ws: WebSocket) {
  const queue: Record<string, unknown>[] = [];
  const waiters: ((m: Record<string, unknown>) => void)[] = [];
  ws.on('message', (d) => {
    const m = JSON.parse((d as Buffer).toString('utf8')) as Record<string, unknown>;
    const w = waiters.shift();
    if (w !== undefined) w(m); else queue.push(m);
  });
  return {
    next: (): Promise<Record<string, unknown>> => {
      const m = queue.shift();
      return m !== undefined ? Promise.resolve(m) : new Promise((r) => waiters.push(r));
    },
    pending: () => queue.length,
  };
}

/** Polls for a state the server reaches on a socket event (fails after 5 s: a hang, not an assertion). */
async function waitFor(pred: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const start = Date.now();
  while (!(await pred())) {
    if (Date.now() - start > 5000) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

t.test('snapshot first, then deltas; proxy view follows and ACKs are recorded', async (t) => {
  const h = await setup(t, view({}));
  h.publish(view({ 'uid-a': wl('a', '10.244.1.2'), 'uid-b': wl('b', '10.244.1.3') }));
  const c = h.client();
  c.start();
  const first = await c.ready();
  t.equal(first.version, 1);
  t.same([...first.workloads.keys()].sort(), ['uid-a', 'uid-b']);
  t.equal(c.connected, true);

  const v2 = h.publish(view({ 'uid-a': wl('a', '10.244.1.9'), 'uid-c': wl('c', '10.244.1.4') }));
  await waitFor(() => c.config?.version === v2, 'v2');
  t.same([...c.config!.workloads.keys()].sort(), ['uid-a', 'uid-c'], 'b removed, c added');
  t.same(c.config!.workloads.get('uid-a')?.ips, ['10.244.1.9'], 'a updated');
  await waitFor(() => h.server.proxies()[0]?.ackedVersion === v2, 'ack of v2');
  t.match(h.server.proxies()[0], { proxy: 'node-agent/node-1', version: 2, ackedVersion: 2 });
  const pushes = await h.metrics.pushes.get();
  t.same(pushes.values.map((v) => [v.labels['type'], v.value]).sort(), [['delta', 1], ['snapshot', 1]]);
});

t.test('a bad resource is NACKed alone and the rest applies', async (t) => {
  const h = await setup(t, view({ 'uid-a': wl('a', '10.244.1.2'), 'uid-bad': { ...wl('bad', '10.244.1.3'), ips: ['not-an-ip'] } }));
  h.publish(view({ 'uid-a': wl('a', '10.244.1.2'), 'uid-bad': { ...wl('bad', '10.244.1.3'), ips: ['not-an-ip'] } }));
  const ws = await h.raw();
  const box = inbox(ws);
  ws.send(JSON.stringify({ type: 'hello', proxy: { kind: 'node-agent', node: 'node-1' } }));
  t.equal((await box.next())['type'], 'snapshot');
  ws.close();
  await waitFor(() => h.server.proxies().length === 0, 'raw proxy gone');

  const c = h.client();
  c.start();
  const cfg = await c.ready();
  t.ok(cfg.workloads.has('uid-a'), 'good workload served');
  t.notOk(cfg.workloads.has('uid-bad'), 'bad workload left out');
  await waitFor(async () => ((await h.metrics.nacks.get()).values[0]?.value ?? 0) > 0, 'the NACK to be counted');
  t.match((await h.metrics.nacks.get()).values[0], { labels: { type: 'workloads' }, value: 1 }, 'controller counted the NACK');
  t.equal(h.server.proxies()[0]?.ackedVersion, null, 'a NACKed version is not acked');
});

t.test('a slow proxy is coalesced to the latest version and never delays the others', async (t) => {
  const h = await setup(t, view({}));
  h.publish(view({ 'uid-a': wl('a', '10.244.1.2') }));
  const slow = await h.raw();
  const box = inbox(slow);
  slow.send(JSON.stringify({ type: 'hello', proxy: { kind: 'node-agent', node: 'node-1' } }));
  const snap = await box.next();
  t.equal(snap['type'], 'snapshot');

  const fast = h.client({ token: 'node-2-token-0123456789', node: 'node-2' });
  fast.start();
  await fast.ready();
  for (let i = 2; i <= 6; i++) {
    h.publish(view({ 'uid-a': wl('a', `10.244.1.${i}`), [`uid-${i}`]: wl(`w${i}`, `10.244.2.${i}`) }));
    await waitFor(() => fast.config?.version === i, `fast proxy at v${i}`);
  }
  t.equal(box.pending(), 0, 'slow proxy got nothing while its snapshot was unanswered');
  slow.send(JSON.stringify({ type: 'ack', version: snap['version'], nonce: snap['nonce'] }));
  const d = await box.next();
  t.equal(d['type'], 'delta');
  t.equal(d['version'], 6, 'one delta straight to the latest version');
  t.match(d['upserts'], { workloads: [{ key: 'uid-a', value: { ips: ['10.244.1.6'] } }, { key: 'uid-6' }] });
  t.equal((await h.metrics.coalesced.get()).values[0]?.value, 4, 'v3..v6 replaced a pending version');
});

t.test('reconnect resumes from the last acked version with a delta', async (t) => {
  const h = await setup(t, view({}));
  h.publish(view({ 'uid-a': wl('a', '10.244.1.2') }));
  const ws1 = await h.raw();
  const box1 = inbox(ws1);
  ws1.send(JSON.stringify({ type: 'hello', proxy: { kind: 'node-agent', node: 'node-1' } }));
  const snap = await box1.next();
  ws1.send(JSON.stringify({ type: 'ack', version: snap['version'], nonce: snap['nonce'] }));
  await waitFor(() => h.server.proxies()[0]?.ackedVersion === 1, 'ack');
  ws1.terminate();
  await waitFor(() => h.server.proxies().length === 0, 'disconnect');
  h.publish(view({ 'uid-a': wl('a', '10.244.1.2'), 'uid-b': wl('b', '10.244.1.3') }));

  const ws2 = await h.raw();
  const box2 = inbox(ws2);
  ws2.send(JSON.stringify({ type: 'hello', proxy: { kind: 'node-agent', node: 'node-1' }, lastVersion: 1 }));
  const d = await box2.next();
  t.equal(d['type'], 'delta', 'resumed with a delta');
  t.equal(d['version'], 2);
  t.same(d['upserts'], { workloads: [{ key: 'uid-b', value: wl('b', '10.244.1.3') }] }, 'only the change since v1');

  const ws3 = await h.raw();
  const box3 = inbox(ws3);
  ws3.send(JSON.stringify({ type: 'hello', proxy: { kind: 'node-agent', node: 'node-1' }, lastVersion: 99 }));
  t.equal((await box3.next())['type'], 'snapshot', 'unknown version (e.g. another controller process): snapshot');
});

t.test('the push client keeps its config while the controller is away, then takes a restarted controller\'s snapshot', async (t) => {
  const h = await setup(t, view({}));
  h.publish(view({ 'uid-a': wl('a', '10.244.1.2') }));
  const seen: number[] = [];
  const c = h.client({ onConfig: (cfg) => { seen.push(cfg.version); } });
  c.start();
  await c.ready();
  await waitFor(() => h.server.proxies()[0]?.ackedVersion === 1, 'ack');
  const port = h.server.address.port;
  await h.server.close();
  await waitFor(() => !c.connected, 'client noticed');
  t.ok(c.config?.workloads.has('uid-a'), 'last good config still served while disconnected');

  // A new controller process: versions restart, it has no memory of the proxy.
  const server2 = await PushServer.create({
    host: '127.0.0.1', port, tls: { keyPem: h.tls.keyPem, chain: [h.tls.certPem] },
    authenticator: new TokenFileAuthenticator(tokens), viewFor: () => view({ 'uid-z': wl('z', '10.244.1.9') }),
    log: quiet, metrics: createControllerMetrics(),
  });
  t.teardown(() => server2.close());
  server2.publish(1);
  await waitFor(() => c.config?.workloads.has('uid-z') === true, 'snapshot from the new controller');
  t.notOk(c.config?.workloads.has('uid-a'), 'old state replaced, not merged');
  t.ok(c.connected);
  t.same(seen, [1, 1]);
});

t.test('authentication: unknown token gets 401, a hello for another proxy is refused', async (t) => {
  const h = await setup(t, view({}));
  h.publish(view({}));
  await t.rejects(h.raw('wrong-token-000000000000'), /401/);
  const ws = await h.raw();
  const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
  ws.send(JSON.stringify({ type: 'hello', proxy: { kind: 'node-agent', node: 'node-2' } }));
  t.equal(await closed, 1008);
  t.equal((await h.metrics.authFailures.get()).values[0]?.value, 2);
});

t.test('malformed messages close the connection with a reason and are counted', async (t) => {
  const h = await setup(t, view({}));
  const ws = await h.raw();
  const closed = new Promise<[number, string]>((r) => ws.once('close', (code, reason) => r([code, reason.toString()])));
  ws.send(JSON.stringify({ type: 'hello', proxy: { kind: 'node-agent' } }));
  const [code, reason] = await closed;
  t.equal(code, 1008);
  t.match(reason, /malformed message: proxy/);
  const m = await h.metrics.invalidMessages.get();
  t.match(m.values[0], { labels: { reason: 'schema' }, value: 1 });

  const ws2 = await h.raw();
  const closed2 = new Promise<number>((r) => ws2.once('close', (c) => r(c)));
  ws2.send('x'.repeat(2 * 1024 * 1024));
  t.equal(await closed2, 1009, 'oversized message closes with 1009');
});

t.test('CSRs are passed to the signer with the caller identity; refusals carry the reason', async (t) => {
  const calls: string[] = [];
  const signCsr: Signer = (proxy, identity): Promise<string[]> => {
    calls.push(`${proxy.kind} ${identity}`);
    return identity.endsWith('/sa/ok') ? Promise.resolve(['LEAF', 'ROOT']) : Promise.reject(new Error('pod not on node-1'));
  };
  const h = await setup(t, view({}), signCsr);
  h.publish(view({}));
  const c = h.client();
  c.start();
  await c.ready();
  t.same(await c.sign('spiffe://cluster.local/ns/demo/sa/ok', 'CSR'), ['LEAF', 'ROOT']);
  await t.rejects(c.sign('spiffe://cluster.local/ns/demo/sa/other', 'CSR'), /pod not on node-1/);
  t.same(calls, ['node-agent spiffe://cluster.local/ns/demo/sa/ok', 'node-agent spiffe://cluster.local/ns/demo/sa/other']);
  const m = await h.metrics.csrs.get();
  t.same(m.values.map((v) => [v.labels['result'], v.value]).sort(), [['refused', 1], ['signed', 1]]);
});

t.test('snapshots after a restart are paced: at most maxConcurrentSnapshots in flight', async (t) => {
  const h = await setup(t, view({}), undefined, { maxConcurrentSnapshots: 1 });
  h.publish(view({ 'uid-a': wl('a', '10.244.1.2') }));
  const a = await h.raw();
  const boxA = inbox(a);
  a.send(JSON.stringify({ type: 'hello', proxy: { kind: 'node-agent', node: 'node-1' } }));
  const snapA = await boxA.next();
  const b = await h.raw('node-2-token-0123456789');
  const boxB = inbox(b);
  b.send(JSON.stringify({ type: 'hello', proxy: { kind: 'node-agent', node: 'node-2' } }));
  await waitFor(() => h.server.connectedCount === 2, 'both connected');
  h.publish(view({ 'uid-a': wl('a', '10.244.1.3') }));
  // Sends happen inside publish() and the hello handler: counting them needs no waiting.
  t.same(await pushCounts(h.metrics), [['snapshot', 1]], 'second proxy waits while the first snapshot is unanswered');
  a.send(JSON.stringify({ type: 'ack', version: snapA['version'], nonce: snapA['nonce'] }));
  const snapB = await boxB.next();
  t.match(snapB, { type: 'snapshot', version: 2 }, 'then gets the latest version, as its first message (nothing was sent to it before)');
  t.match(await boxA.next(), { type: 'delta', version: 2 });
});

t.test('a big snapshot goes to every proxy as one shared deflated binary frame; an older proxy without the header gets text', async (t) => {
  const big: Record<string, unknown> = {};
  for (let i = 0; i < 400; i++) big[`uid-w${i}`] = wl(`w${i}`, `10.244.${i >> 8}.${i & 255}`);
  const h = await setup(t, view(big));
  h.publish(view(big));
  const a = h.client();
  const b = h.client({ token: 'node-2-token-0123456789', node: 'node-2' });
  a.start();
  b.start();
  const [ca, cb] = await Promise.all([a.ready(), b.ready()]);
  t.equal(ca.workloads.size, 400);
  t.equal(cb.workloads.size, 400);
  const bytes = await h.metrics.pushBytes.get();
  const deflated = bytes.values.find((v) => v.labels['encoding'] === 'deflate')?.value ?? 0;
  const json = JSON.stringify([...Object.values(big)]).length;
  t.ok(deflated > 0 && deflated < json / 2, `two snapshots took ${deflated} bytes on the wire for ${json} bytes of workloads each`);

  // A raw client that does not announce the encoding: plain JSON text, same content.
  const legacy = await new Promise<WebSocket>((resolve, reject) => {
    const ws = new WebSocket(h.url + PUSH_PATH, { ca: [h.tls.certPem], headers: { authorization: `Bearer ${TOKEN}` } });
    t.teardown(() => ws.terminate());
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
  await a.close(); // same proxy identity as the legacy socket
  const frame = new Promise<{ isBinary: boolean; text: string }>((r) => legacy.once('message', (d, isBinary) => r({ isBinary, text: (d as Buffer).toString('utf8') })));
  legacy.send(JSON.stringify({ type: 'hello', proxy: { kind: 'node-agent', node: 'node-1' } }));
  const f = await frame;
  t.equal(f.isBinary, false, 'text frame for a proxy without x-rondo-frame-encoding');
  t.equal(Object.keys((JSON.parse(f.text) as { resources: { workloads: unknown[] } }).resources.workloads).length, 400);
});

t.test('a proxy that never says hello is closed at the hello deadline, on the server\'s clock', async (t) => {
  const clock = new ManualClock();
  const h = await setup(t, view({}), undefined, { clock, helloTimeoutMs: 5000 });
  const ws = await h.raw();
  const closed = new Promise<[number, string]>((r) => ws.once('close', (code, reason) => r([code, reason.toString()])));
  t.same(clock.pending().map((p) => [p.delayMs, p.repeat]), [[20_000, true], [5000, false]], 'the ping interval and this connection\'s hello deadline');
  clock.advance(4999);
  t.equal(ws.readyState, WebSocket.OPEN, 'still open just before the deadline');
  t.match((await h.metrics.invalidMessages.get()).values, [], 'nothing counted yet');
  clock.advance(1);
  const [code, reason] = await closed;
  t.equal(code, 1008);
  t.match(reason, /no hello within the timeout/);
  t.match((await h.metrics.invalidMessages.get()).values, [{ labels: { reason: 'invalid' }, value: 1 }]);
});

t.test('a proxy that stops answering pings is terminated at the next ping; one that answers stays', async (t) => {
  const clock = new ManualClock();
  const h = await setup(t, view({}), undefined, { clock, pingIntervalMs: 1000 });
  h.publish(view({}));
  const live = await h.raw();
  const dead = await h.raw('node-2-token-0123456789', { autoPong: false });
  const liveBox = inbox(live);
  const deadBox = inbox(dead);
  live.send(JSON.stringify({ type: 'hello', proxy: { kind: 'node-agent', node: 'node-1' } }));
  dead.send(JSON.stringify({ type: 'hello', proxy: { kind: 'node-agent', node: 'node-2' } }));
  await liveBox.next();
  await deadBox.next(); // both helloed: the server has handled every frame they sent
  t.same(clock.pending().filter((p) => p.repeat), [{ delayMs: 1000, dueInMs: 1000, repeat: true, refed: false }], 'one unref’d ping interval');
  const pinged = (ws: WebSocket): Promise<void> => new Promise((r) => ws.once('ping', () => r()));
  const roundTrip = (ws: WebSocket): Promise<void> => new Promise((r) => { ws.once('pong', () => r()); ws.ping(); });
  const [livePing, deadPing] = [pinged(live), pinged(dead)];
  clock.advance(1000);
  await livePing;
  await deadPing;
  // The live side answered the ping when it arrived; our own ping's pong proves the server read that answer.
  await roundTrip(live);
  const deadClosed = new Promise<number>((r) => dead.once('close', (code) => r(code)));
  clock.advance(1000);
  t.equal(await deadClosed, 1006, 'terminated without a closing handshake');
  await roundTrip(live);
  t.equal(live.readyState, WebSocket.OPEN, 'the proxy that answered is kept');
});

t.test('after a NACK the controller resends what the proxy refused with the next change, so both agree on what it holds', async (t) => {
  const h = await setup(t, view({}));
  h.publish(view({ 'uid-a': wl('a', '10.244.1.2') }));
  // The proxy cannot take a's new address at v2 (a transient failure on its side): it keeps the old a.
  const c = h.client({ onConfig: (cfg) => (cfg.version === 2 ? [{ type: 'workloads', key: 'uid-a', reason: 'address 10.244.1.7 not usable yet' }] : []) });
  c.start();
  await c.ready();
  const v2 = h.publish(view({ 'uid-a': wl('a', '10.244.1.7') }));
  await waitFor(() => c.config?.version === v2, 'v2 answered');
  t.same(c.config?.workloads.get('uid-a')?.ips, ['10.244.1.2'], 'the proxy kept its previous a');
  for (let i = 0; i < 400 && (await h.metrics.nacks.get()).values.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
  t.match((await h.metrics.nacks.get()).values, [{ labels: { type: 'workloads' }, value: 1 }], 'the controller got the NACK');
  const v3 = h.publish(view({ 'uid-a': wl('a', '10.244.1.7'), 'uid-b': wl('b', '10.244.1.3') }));
  await waitFor(() => c.config?.version === v3, 'v3');
  t.same(c.config?.workloads.get('uid-a')?.ips, ['10.244.1.7'], 'a went out again with the next change and now applied');
  t.ok(c.config?.workloads.has('uid-b'));
  await waitFor(() => h.server.proxies()[0]?.ackedVersion === v3, 'v3 acked');
});

t.test('a refused trust bundle stays pending: every later delta carries the mesh again until the proxy takes it', async (t) => {
  const good = [selfSignedLocalhost().certPem];
  const bad = [...good, 'garbage'];
  const h = await setup(t, view({}));
  h.publish(view({ 'uid-a': wl('a', '10.244.1.2') }, good));
  const c = h.client();
  c.start();
  await c.ready();
  const nacked = async (): Promise<number> => (await h.metrics.nacks.get()).values.find((v) => v.labels['type'] === 'mesh')?.value ?? 0;
  const v2 = h.publish(view({ 'uid-a': wl('a', '10.244.1.2'), 'uid-b': wl('b', '10.244.1.3') }, bad));
  await waitFor(() => c.config?.version === v2, 'v2');
  for (let i = 0; i < 400 && await nacked() < 1; i++) await new Promise((r) => setTimeout(r, 5));
  t.ok(c.config?.workloads.has('uid-b'), 'the rest of v2 applied');
  t.same(c.config?.mesh.trustBundle, good, 'the proxy kept its bundle');
  const v3 = h.publish(view({ 'uid-a': wl('a', '10.244.1.2'), 'uid-b': wl('b', '10.244.1.3'), 'uid-c': wl('c', '10.244.1.4') }, bad));
  await waitFor(() => c.config?.version === v3, 'v3');
  for (let i = 0; i < 400 && await nacked() < 2; i++) await new Promise((r) => setTimeout(r, 5));
  t.equal(await nacked(), 2, 'v3 carried the bad mesh again (the controller knows the proxy does not hold it) and was NACKed again');
  t.not(h.server.proxies()[0]?.ackedVersion, v3, 'v3 is not reported as applied');
  // A different bundle that loads (the same root, re-encoded with CRLF line ends).
  const rotated = [...good, good[0]!.replace(/\n/g, '\r\n')];
  const v4 = h.publish(view({ 'uid-a': wl('a', '10.244.1.2'), 'uid-b': wl('b', '10.244.1.3'), 'uid-c': wl('c', '10.244.1.4') }, rotated));
  await waitFor(() => h.server.proxies()[0]?.ackedVersion === v4, 'v4 acked');
  t.same(c.config?.mesh.trustBundle, rotated, 'a loadable bundle is taken');
});

t.test('a first snapshot whose mesh was refused is followed by a snapshot, not a delta the proxy has no base for', async (t) => {
  const h = await setup(t, view({}));
  h.publish(view({ 'uid-a': wl('a', '10.244.1.2') }, ['garbage']));
  const c = h.client();
  c.start();
  for (let i = 0; i < 400 && (await h.metrics.nacks.get()).values.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
  t.equal(c.config, undefined, 'nothing to serve from the refused snapshot');
  await waitFor(() => h.server.proxies()[0]?.version === null, 'controller knows it holds nothing it can name');
  h.publish(view({ 'uid-a': wl('a', '10.244.1.2') }));
  const cfg = await c.ready();
  t.ok(cfg.workloads.has('uid-a'));
  const pushes = await h.metrics.pushes.get();
  t.same(pushes.values.map((v) => [v.labels['type'], v.value]).sort(), [['snapshot', 2]], 'two snapshots, no delta (and no reconnect)');
});
