import t from 'tap';
import { Counter, Registry } from 'prom-client';
import { createLogger } from '../../common/log.ts';
import { V1ListMeta, V1ObjectMeta, V1Pod, V1PodSpec } from '@kubernetes/client-node';
import { KubernetesSource, loadKubeConfig } from '../../controller/sources/kubernetes.ts';
import { toKubeObject, toPlainJson } from '../../controller/sources/kubernetes-plain.ts';
import { ManualClock, realClock } from '../../common/clock.ts';
import type { Clock } from '../../common/clock.ts';
import type { Logger } from '../../common/log.ts';
import type { KubeObject, ResourceSink, WatchedKind } from '../../controller/sources/types.ts';
import { ObjectStore } from '../../controller/store.ts';
import { KubeApiDouble } from '../helpers/kube-api-double.ts';
import type { DoubleObject, RecordedRequest } from '../helpers/kube-api-double.ts';

/** A store that records what the source wrote and lets a test wait for a state. */
class MemorySink implements ResourceSink {
  readonly objects = new Map<string, KubeObject>();
  readonly replaced: string[] = [];
  #waiters: Array<() => void> = [];
  upsert(obj: KubeObject): void {
    this.objects.set(`${obj.kind}/${obj.metadata.namespace ?? ''}/${obj.metadata.name}`, obj);
    this.#changed();
  }
  remove(kind: string, namespace: string | undefined, name: string): void {
    this.objects.delete(`${kind}/${namespace ?? ''}/${name}`);
    this.#changed();
  }
  replaceAll(kind: string, objects: KubeObject[]): void {
    for (const k of [...this.objects.keys()]) if (k.startsWith(`${kind}/`)) this.objects.delete(k);
    for (const o of objects) this.objects.set(`${kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`, o);
    this.replaced.push(kind);
    this.#changed();
  }
  get(kind: string, namespace: string | undefined, name: string): KubeObject | undefined {
    return this.objects.get(`${kind}/${namespace ?? ''}/${name}`);
  }
  names(kind: string): string[] {
    return [...this.objects.values()].filter((o) => o.kind === kind).map((o) => o.metadata.name).sort();
  }
  /** Resolves once `pred` holds after some write. */
  until(pred: () => boolean): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = (): void => { if (pred()) resolve(); else this.#waiters.push(check); };
      this.#waiters.push(check);
    });
  }
  #changed(): void {
    const ws = this.#waiters;
    this.#waiters = [];
    for (const w of ws) w();
  }
}

const silent = createLogger('test', { write: () => true }, 'error');

function pod(name: string, ns = 'demo', extra: Record<string, unknown> = {}): DoubleObject {
  return {
    kind: 'Pod',
    metadata: { name, namespace: ns, labels: { app: name.split('-')[0] ?? name } },
    spec: { nodeName: 'node-1', serviceAccountName: 'default', containers: [{ name: 'app', image: 'demo:1', ports: [{ containerPort: 8080, protocol: 'TCP' }] }] },
    status: { phase: 'Running', podIP: '10.244.1.5', podIPs: [{ ip: '10.244.1.5' }] },
    ...extra,
  };
}

interface Setup { api: KubeApiDouble; sink: MemorySink; registry: Registry; source: KubernetesSource; delays: number[] }

async function setup(
  t: { teardown(fn: () => Promise<void>): void },
  o: { kinds?: WatchedKind[]; before?: (api: KubeApiDouble) => void; pageSize?: number; startTimeoutMs?: number; start?: boolean; clock?: Clock; log?: Logger } = {},
): Promise<Setup> {
  const api = await KubeApiDouble.create();
  o.before?.(api);
  const sink = new MemorySink();
  const registry = new Registry();
  const delays: number[] = [];
  // By default real time (the tests wait for the API's answers), recording the delays chosen.
  const startTimeoutMs = o.startTimeoutMs ?? 5000;
  const clock: Clock = o.clock ?? { ...realClock, setTimeout: (fn, ms) => { if (ms > 0 && ms !== startTimeoutMs) delays.push(ms); return realClock.setTimeout(fn, ms); } };
  const source = new KubernetesSource({
    kubeConfig: api.kubeConfig(), sink, log: o.log ?? silent, registry,
    kinds: o.kinds ?? ['Namespace', 'Pod'],
    backoff: { initialMs: 10, maxMs: 40 }, missingKindRetryMs: 20, healthyWatchMs: 60_000,
    pageSize: o.pageSize ?? 500, startTimeoutMs,
    random: () => 0.5, clock,
  });
  t.teardown(async () => { await source.close(); await api.close(); });
  if (o.start !== false) await source.start();
  return { api, sink, registry, source, delays };
}

async function metric(registry: Registry, name: string, kind: string): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  return (m?.values.find((v) => v.labels['kind'] === kind)?.value) ?? 0;
}

const isPod = (watch: boolean) => (r: RecordedRequest): boolean => r.kind === 'Pod' && r.watch === watch;

t.test('initial list lands in the sink as plain objects, then a watch starts from the list resourceVersion', async (t) => {
  const { api, sink } = await setup(t, {
    before: (api) => {
      api.apply({ kind: 'Namespace', metadata: { name: 'demo', labels: { 'rondo.dev/dataplane-mode': 'ambient' } } });
      api.apply(pod('web-1'));
      api.apply(pod('web-2'));
    },
  });
  t.same(sink.names('Pod'), ['web-1', 'web-2']);
  const p = sink.get('Pod', 'demo', 'web-1');
  t.equal(p?.apiVersion, 'v1', 'list items get apiVersion back');
  t.equal(p?.kind, 'Pod', 'list items get kind back');
  t.equal(Object.getPrototypeOf(p), Object.prototype, 'a plain object, not a model instance');
  t.equal(typeof p?.metadata['creationTimestamp' as keyof typeof p.metadata], 'string', 'dates stay RFC 3339 strings');
  // The typed-list path must yield exactly the JSON the server holds (what a watch would deliver).
  const served = api.requests.find(isPod(false));
  t.ok(served, 'pods were listed');
  t.match(sink.get('Namespace', undefined, 'demo')?.metadata.labels, { 'rondo.dev/dataplane-mode': 'ambient' });
  const w = await api.waitForRequest(isPod(true));
  const list = api.requests.findIndex(isPod(false));
  t.ok(list < api.requests.indexOf(w), 'list before watch');
  t.equal(w.query['resourceVersion'], api.resourceVersion, 'watch resumes from the list resourceVersion');
  t.equal(w.query['allowWatchBookmarks'], 'true', 'bookmarks requested');
  t.equal(w.authorization, `Bearer ${api.token}`, 'kubeconfig credentials are sent');

  // The same object through the watch path is identical to what the list produced.
  const before = structuredClone(sink.get('Pod', 'demo', 'web-2'));
  api.apply(pod('web-2'));
  await sink.until(() => sink.get('Pod', 'demo', 'web-2')?.metadata.resourceVersion !== before?.metadata.resourceVersion);
  const after = sink.get('Pod', 'demo', 'web-2');
  t.same({ ...after, metadata: { ...after?.metadata, resourceVersion: '', generation: 0 } }, { ...before, metadata: { ...before?.metadata, resourceVersion: '', generation: 0 } }, 'list and watch yield the same shape');
});

t.test('add, modify and delete through the watch reach the sink', async (t) => {
  const { api, sink } = await setup(t, { before: (api) => api.apply(pod('a-1')) });
  await api.waitForRequest(isPod(true));
  api.apply(pod('b-1'));
  await sink.until(() => sink.get('Pod', 'demo', 'b-1') !== undefined);
  api.apply(pod('a-1', 'demo', { status: { phase: 'Running', podIP: '10.244.1.9' } }));
  await sink.until(() => (sink.get('Pod', 'demo', 'a-1')?.status as { podIP?: string } | undefined)?.podIP === '10.244.1.9');
  api.delete('Pod', 'demo', 'a-1');
  await sink.until(() => sink.get('Pod', 'demo', 'a-1') === undefined);
  t.same(sink.names('Pod'), ['b-1']);
  t.equal(api.requests.filter(isPod(false)).length, 1, 'no re-list');
});

t.test('a dropped watch resumes from the last resourceVersion without a re-list, and counts a restart', async (t) => {
  const { api, sink, registry } = await setup(t, { before: (api) => api.apply(pod('a-1')) });
  await api.waitForRequest(isPod(true));
  api.apply(pod('b-1'));
  await sink.until(() => sink.get('Pod', 'demo', 'b-1') !== undefined);
  const lastSeen = api.resourceVersion;
  const mark = api.requests.length;
  t.equal(api.dropWatches('Pod'), 1);
  api.apply(pod('c-1')); // happens while no watch is open: must come from history
  const again = await api.waitForRequest(isPod(true), mark);
  t.equal(again.query['resourceVersion'], lastSeen, 'resumes where the stream stopped');
  await sink.until(() => sink.get('Pod', 'demo', 'c-1') !== undefined);
  t.equal(api.requests.filter(isPod(false)).length, 1, 'no re-list');
  t.equal(await metric(registry, 'rondo_controller_watch_restarts_total', 'Pod'), 1);
  t.equal(await metric(registry, 'rondo_controller_watch_restarts_total', 'Namespace'), 0);
});

t.test('restarts also reach an onWatchRestart hook; a registry that already has the metric is refused', async (t) => {
  const api = await KubeApiDouble.create();
  t.teardown(() => api.close());
  const seen: string[] = [];
  const source = new KubernetesSource({ kubeConfig: api.kubeConfig(), sink: new MemorySink(), log: silent, kinds: ['Pod'], onWatchRestart: (kind, reason) => seen.push(`${kind}:${reason}`) });
  t.teardown(() => source.close());
  await source.start();
  await api.waitForRequest(isPod(true));
  api.apply(pod('x'));
  api.dropWatches('Pod', { clean: true });
  await api.waitForRequest(isPod(true), api.requests.findIndex(isPod(true)) + 1);
  t.same(seen, ['Pod:closed']);
  const taken = new Registry();
  new Counter({ name: 'rondo_controller_watch_restarts_total', help: 'h', labelNames: ['source'], registers: [taken] });
  t.throws(() => new KubernetesSource({ kubeConfig: api.kubeConfig(), sink: new MemorySink(), log: silent, registry: taken }), { code: 'RONDO_E_METRIC_CONFLICT' });
});

t.test('410 Gone: re-list, replace everything, objects deleted meanwhile disappear', async (t) => {
  const { api, sink, registry } = await setup(t, { before: (api) => { api.apply(pod('a-1')); api.apply(pod('b-1')); } });
  await api.waitForRequest(isPod(true));
  const mark = api.requests.length;
  api.dropWatches('Pod');
  // All synchronous, so before the source reconnects: changes land and etcd compacts.
  api.delete('Pod', 'demo', 'a-1');
  api.apply(pod('c-1'));
  api.compact();
  await api.waitForRequest(isPod(false), mark);
  await sink.until(() => sink.names('Pod').join() === 'b-1,c-1');
  t.same(sink.names('Pod'), ['b-1', 'c-1']);
  t.equal(sink.replaced.filter((k) => k === 'Pod').length, 2, 'second snapshot replaced the first');
  const watches = api.requests.filter(isPod(true));
  t.equal(watches.at(-2)?.query['resourceVersion'] !== api.resourceVersion, true, 'the expired watch used the old version');
  const fresh = await api.waitForRequest((r) => isPod(true)(r) && r.query['resourceVersion'] === api.resourceVersion, mark);
  t.ok(fresh, 'then watches from the new list');
  t.equal(await metric(registry, 'rondo_controller_relists_total', 'Pod'), 1);
  t.ok(await metric(registry, 'rondo_controller_watch_restarts_total', 'Pod') >= 2, 'drop and expiry both count');
});

t.test('410 as an HTTP status on the watch request also re-lists', async (t) => {
  const { api, sink } = await setup(t, { before: (api) => api.apply(pod('a-1')) });
  await api.waitForRequest(isPod(true));
  const mark = api.requests.length;
  api.failNext('Pod', { watch: true, code: 410 });
  api.dropWatches('Pod');
  api.delete('Pod', 'demo', 'a-1');
  await api.waitForRequest(isPod(false), mark);
  await sink.until(() => sink.names('Pod').length === 0);
  t.same(sink.names('Pod'), []);
});

t.test('a 410 ERROR event on a stream the server keeps open still leads to a re-list', async (t) => {
  const { api, sink } = await setup(t, { kinds: ['Pod'], before: (api) => api.apply(pod('a-1')) });
  await api.waitForRequest(isPod(true));
  const mark = api.requests.length;
  api.emitRaw('Pod', JSON.stringify({ type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'too old resource version', reason: 'Expired', code: 410 } }));
  await api.waitForRequest(isPod(false), mark);
  await api.waitForRequest(isPod(true), mark);
  t.same(sink.names('Pod'), ['a-1']);
  t.equal(api.watchCount('Pod'), 1, 'the old stream was closed by the client');
});

t.test('bookmarks advance the resourceVersion a watch resumes from', async (t) => {
  const { api, sink } = await setup(t, { before: (api) => api.apply(pod('a-1')) });
  await api.waitForRequest(isPod(true));
  await api.waitForRequest((r) => r.kind === 'Namespace' && r.watch);
  // Other kinds move the global resourceVersion; only a bookmark tells the Pod watch.
  api.apply({ kind: 'Namespace', metadata: { name: 'x' } });
  api.apply({ kind: 'Namespace', metadata: { name: 'y' } });
  await sink.until(() => sink.get('Namespace', undefined, 'y') !== undefined);
  const rv = api.resourceVersion;
  t.equal(api.bookmark('Pod'), 1, 'the Pod watch asked for bookmarks');
  // Let the bookmark reach the client before the stream breaks (the stream is ordered).
  api.apply(pod('marker'));
  await sink.until(() => sink.get('Pod', 'demo', 'marker') !== undefined);
  api.delete('Pod', 'demo', 'marker');
  await sink.until(() => sink.get('Pod', 'demo', 'marker') === undefined);
  const last = api.resourceVersion;
  t.ok(Number(last) > Number(rv));
  api.compact();
  const mark = api.requests.length;
  api.dropWatches('Pod', { clean: true });
  const again = await api.waitForRequest(isPod(true), mark);
  t.equal(again.query['resourceVersion'], last, 'resumes from the newest version seen, bookmark included');
  t.equal(api.requests.slice(mark).filter(isPod(false)).length, 0, 'compaction at that version needs no re-list');
});

t.test('bookmark alone updates the resume version', async (t) => {
  const { api, sink } = await setup(t, { kinds: ['Pod', 'Namespace'] });
  await api.waitForRequest(isPod(true));
  await api.waitForRequest((r) => r.kind === 'Namespace' && r.watch);
  api.apply({ kind: 'Namespace', metadata: { name: 'x' } });
  await sink.until(() => sink.get('Namespace', undefined, 'x') !== undefined);
  const rv = api.resourceVersion;
  api.bookmark('Pod');
  api.compact();
  // A clean end after the bookmark line: the client reads the line, then sees the end.
  const mark = api.requests.length;
  api.dropWatches('Pod', { clean: true });
  const again = await api.waitForRequest(isPod(true), mark);
  t.equal(again.query['resourceVersion'], rv);
  t.equal(api.requests.slice(mark).filter(isPod(false)).length, 0, 'no 410, no re-list');
});

t.test('a kind whose CRD is missing (404) does not block start and appears once installed', async (t) => {
  const { api, sink, registry } = await setup(t, { kinds: ['Pod', 'TrafficPolicy'], before: (api) => api.setMissing('TrafficPolicy') });
  t.ok(sink.replaced.includes('TrafficPolicy'), 'treated as an empty kind');
  t.same(sink.names('TrafficPolicy'), []);
  api.setMissing('TrafficPolicy', false);
  api.apply({ kind: 'TrafficPolicy', metadata: { name: 'tp', namespace: 'demo' }, spec: { targetRefs: [{ group: '', kind: 'Service', name: 'web' }] } });
  await sink.until(() => sink.get('TrafficPolicy', 'demo', 'tp') !== undefined);
  const tp = sink.get('TrafficPolicy', 'demo', 'tp');
  t.equal(tp?.apiVersion, 'traffic.rondo.dev/v1alpha1');
  t.same(tp?.spec, { targetRefs: [{ group: '', kind: 'Service', name: 'web' }] });
  t.ok(await metric(registry, 'rondo_controller_relists_total', 'TrafficPolicy') >= 1);
});

t.test('failed lists retry with jittered exponential backoff', async (t) => {
  const { api, sink, delays } = await setup(t, {
    kinds: ['Pod'],
    before: (api) => { api.apply(pod('a-1')); api.failNext('Pod', { watch: false, code: 500, times: 3 }); },
  });
  t.same(sink.names('Pod'), ['a-1']);
  t.same(delays.slice(0, 3), [8, 15, 30], 'grows 10 -> 20 -> 40 ms, jittered (random 0.5)');
  t.equal(api.requests.filter(isPod(false)).length, 4);
});

t.test('a watch that keeps failing backs off too, then recovers', async (t) => {
  const { api, sink, delays, registry } = await setup(t, { kinds: ['Pod'] });
  await api.waitForRequest(isPod(true));
  const mark = api.requests.length;
  api.failNext('Pod', { watch: true, code: 500, times: 2 });
  api.dropWatches('Pod');
  api.apply(pod('late'));
  await sink.until(() => sink.get('Pod', 'demo', 'late') !== undefined);
  t.equal(api.requests.slice(mark).filter(isPod(true)).length, 3, 'two failures then success');
  // The dropped watch had delivered nothing and was short-lived, so it counts as a failure too.
  t.same(delays.slice(-3), [8, 15, 30], 'backed off, growing, between the failed watches');
  t.equal(await metric(registry, 'rondo_controller_watch_restarts_total', 'Pod'), 3);
});

t.test('list pages through continue tokens', async (t) => {
  const { api, sink } = await setup(t, {
    kinds: ['Pod'], pageSize: 2,
    before: (api) => { for (let i = 1; i <= 5; i++) api.apply(pod(`p-${i}`)); },
  });
  t.same(sink.names('Pod'), ['p-1', 'p-2', 'p-3', 'p-4', 'p-5']);
  const lists = api.requests.filter(isPod(false));
  t.equal(lists.length, 3);
  t.same(lists.map((r) => r.query['limit']), ['2', '2', '2']);
  t.notOk(lists[0]?.query['continue']);
  t.ok(lists[1]?.query['continue'] && lists[2]?.query['continue']);
  const w = await api.waitForRequest(isPod(true));
  t.equal(w.query['resourceVersion'], api.resourceVersion);
});

t.test('start() fails with a clear error when a required kind cannot be listed', async (t) => {
  const { source } = await setup(t, {
    kinds: ['Pod'], start: false, startTimeoutMs: 150,
    before: (api) => api.failNext('Pod', { watch: false, code: 403, times: 1000 }),
  });
  await t.rejects(source.start(), { code: 'RONDO_E_KUBE_SYNC', message: /Pod.*403.*ServiceAccount/ });
});

t.test('close() stops every watch and pending retry; no request afterwards', async (t) => {
  const clock = new ManualClock();
  let retrying!: () => void;
  const retryArmed = new Promise<void>((r) => { retrying = r; });
  // The warning is logged right before the retry timer is armed.
  const log = createLogger('test', { write: (l: string) => { if (l.includes('list failed; retrying')) retrying(); return true; } }, 'warn');
  const { api, source } = await setup(t, {
    kinds: ['Pod', 'Namespace', 'EndpointSlice'], clock, log, start: false,
    before: (api) => api.failNext('EndpointSlice', { watch: false, code: 500, times: 1 }),
  });
  const started = source.start();
  clock.advance(0); // the first lists
  await api.waitForRequest(isPod(true));
  await api.waitForRequest((r) => r.kind === 'Namespace' && r.watch);
  await retryArmed;
  t.same(clock.pending().map((p) => p.delayMs).sort((a, b) => a - b), [8, 5000], 'the EndpointSlice retry (8 ms) and the start-up deadline are armed');
  const refused = t.rejects(started, { code: 'RONDO_E_KUBE_SYNC', message: /closed before every kind was listed/ });
  await source.close();
  await source.close();
  await refused;
  t.same(clock.pending(), [], 'close() cleared the retry and the start-up deadline');
  await untilTurns(() => api.watchCount() === 0);
  t.pass('the open watches were closed by the client');
  const mark = api.requests.length;
  api.apply(pod('after'));
  clock.advance(3_600_000);
  t.same(clock.pending(), [], 'nothing re-armed');
  t.equal(api.requests.length, mark, 'no request after close, however long it waits');
});

/** Waits, one event-loop turn at a time (no timers), until `pred` holds: for socket events the test cannot subscribe to. */
async function untilTurns(pred: () => boolean): Promise<void> {
  while (!pred()) await new Promise((r) => setImmediate(r));
}

t.test('typed model instances become the API JSON: wire names, RFC 3339 times, kind restored', (t) => {
  const meta = new V1ListMeta();
  meta._continue = 'tok';
  meta.resourceVersion = '7';
  t.same(toPlainJson({ metadata: meta, items: [] }), { metadata: { continue: 'tok', resourceVersion: '7' }, items: [] });
  const p = new V1Pod();
  p.metadata = Object.assign(new V1ObjectMeta(), { name: 'a', namespace: 'demo', creationTimestamp: new Date('2026-01-02T03:04:05Z') });
  p.spec = Object.assign(new V1PodSpec(), { containers: [], nodeName: 'node-1' });
  t.same(toKubeObject(p, 'v1', 'Pod'), {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name: 'a', namespace: 'demo', creationTimestamp: '2026-01-02T03:04:05Z' },
    spec: { containers: [], nodeName: 'node-1' },
  });
  t.throws(() => toKubeObject({ metadata: {} }, 'v1', 'Pod'), { code: 'RONDO_E_INVALID', message: /Pod: object without metadata\.name/ });
  t.throws(() => toKubeObject('x', 'v1', 'Pod'), { code: 'RONDO_E_INVALID' });
  t.end();
});

t.test('Services and EndpointSlices read the same through list and watch', async (t) => {
  const svc: DoubleObject = {
    kind: 'Service', metadata: { name: 'web', namespace: 'demo', labels: { 'rondo.dev/use-waypoint': 'wp' } },
    spec: { type: 'ClusterIP', clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10'], selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP', appProtocol: 'http' }, { name: 'grpc', port: 9090, targetPort: 9090, protocol: 'TCP' }] },
  };
  const eps: DoubleObject = {
    kind: 'EndpointSlice', metadata: { name: 'web-abc', namespace: 'demo', labels: { 'kubernetes.io/service-name': 'web' } },
    addressType: 'IPv4',
    endpoints: [{ addresses: ['10.244.1.5'], conditions: { ready: true, serving: true, terminating: false }, nodeName: 'node-1', targetRef: { kind: 'Pod', name: 'web-1', namespace: 'demo', uid: 'u1' } }],
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
  const { api, sink } = await setup(t, { kinds: ['Service', 'EndpointSlice'], before: (api) => { api.apply(svc); api.apply(eps); } });
  const listed = { svc: structuredClone(sink.get('Service', 'demo', 'web')), eps: structuredClone(sink.get('EndpointSlice', 'demo', 'web-abc')) };
  t.same(listed.svc?.spec, svc['spec'], 'int-or-string targetPort kept as sent');
  t.same(listed.eps?.['endpoints'], eps['endpoints']);
  await api.waitForRequest((r) => r.kind === 'EndpointSlice' && r.watch);
  await api.waitForRequest((r) => r.kind === 'Service' && r.watch);
  api.apply(svc);
  api.apply(eps);
  await sink.until(() => sink.get('EndpointSlice', 'demo', 'web-abc')?.metadata.resourceVersion === api.resourceVersion);
  const strip = (o: KubeObject | undefined): unknown => ({ ...o, metadata: { ...o?.metadata, resourceVersion: '', generation: 0 } });
  t.same(strip(sink.get('Service', 'demo', 'web')), strip(listed.svc));
  t.same(strip(sink.get('EndpointSlice', 'demo', 'web-abc')), strip(listed.eps));
});

t.test('a malformed watch event is skipped alone', async (t) => {
  const { api, sink } = await setup(t, { kinds: ['Pod'] });
  await api.waitForRequest(isPod(true));
  api.emitRaw('Pod', JSON.stringify({ type: 'ADDED', object: { kind: 'Pod', apiVersion: 'v1', metadata: { namespace: 'demo' } } }));
  api.emitRaw('Pod', 'this is not JSON');
  api.apply(pod('good'));
  await sink.until(() => sink.get('Pod', 'demo', 'good') !== undefined);
  t.same(sink.names('Pod'), ['good']);
  t.equal(api.requests.filter(isPod(true)).length, 1, 'the stream survived');
});

t.test('close() before the first sync makes start() fail instead of hanging', async (t) => {
  const { source } = await setup(t, { kinds: ['Pod'], start: false, before: (api) => api.failNext('Pod', { watch: false, code: 500, times: 1000 }) });
  const started = source.start();
  await source.close();
  await t.rejects(started, { code: 'RONDO_E_KUBE_SYNC', message: /closed before/ });
});

t.test('loadKubeConfig reads a kubeconfig file', (t) => {
  const dir = t.testdir({
    kubeconfig: [
      'apiVersion: v1', 'kind: Config', 'current-context: lab',
      'clusters: [{name: lab, cluster: {server: "https://10.250.0.2:6443", insecure-skip-tls-verify: true}}]',
      'users: [{name: rondo, user: {token: abc}}]',
      'contexts: [{name: lab, context: {cluster: lab, user: rondo}}]',
    ].join('\n'),
  });
  t.equal(loadKubeConfig(`${dir}/kubeconfig`).getCurrentCluster()?.server, 'https://10.250.0.2:6443');
  t.end();
});

t.test('feeding the controller store: a 410 re-list of unchanged objects is no change, a real change is', async (t) => {
  const api = await KubeApiDouble.create();
  t.teardown(() => api.close());
  api.apply(pod('a-1'));
  api.apply(pod('b-1'));
  const store = new ObjectStore();
  const source = new KubernetesSource({ kubeConfig: api.kubeConfig(), sink: store, log: silent, kinds: ['Pod'], backoff: { initialMs: 10, maxMs: 40 } });
  t.teardown(() => source.close());
  await source.start();
  const rev = store.revision;
  const ref = store.get('Pod', 'demo', 'a-1');
  await api.waitForRequest(isPod(true));
  let mark = api.requests.length;
  api.dropWatches('Pod');
  api.apply({ kind: 'Namespace', metadata: { name: 'elsewhere' } }); // moves the global version only
  api.compact();
  await api.waitForRequest(isPod(false), mark);
  await api.waitForRequest(isPod(true), api.requests.length); // list applied, watching again
  t.equal(store.revision, rev, 'unchanged objects: no store change, so no model rebuild');
  t.equal(store.get('Pod', 'demo', 'a-1'), ref, 'the stored reference is kept');
  mark = api.requests.length;
  api.dropWatches('Pod');
  api.delete('Pod', 'demo', 'b-1');
  api.compact();
  await api.waitForRequest(isPod(false), mark);
  await api.waitForRequest(isPod(true), api.requests.length);
  t.equal(store.revision, rev + 1, 'one change for the re-list that lost b-1');
  t.same([...store.list('Pod').keys()], ['demo/a-1']);
});
