import t from 'tap';
import type { Test } from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { ObjectStore } from '../../controller/store.ts';
import { planStatus, CONTROLLER_NAME } from '../../controller/status/conditions.ts';
import { KubernetesStatusWriter, kubernetesPatcher } from '../../controller/status/status-writer.ts';
import { Controller } from '../../controller/controller.ts';
import { CertificateAuthority } from '../../controller/ca.ts';
import { TokenFileAuthenticator } from '../../controller/push/auth.ts';
import { KubernetesSource } from '../../controller/sources/kubernetes.ts';
import { createControllerMetrics } from '../../controller/metrics.ts';
import { createLogger } from '../../common/log.ts';
import { PushClient } from '../../common/push-client.ts';
import type { KubeObject } from '../../controller/sources/types.ts';
import { KubeApiDouble } from '../helpers/kube-api-double.ts';
import { ManualClock } from '../../common/clock.ts';
import type { Clock } from '../../common/clock.ts';
import type { StatusWriter } from '../../controller/status/status-writer.ts';
import type { StoreReader } from '../../controller/store.ts';
import { freePort } from '../helpers/net.ts';

const quiet = createLogger('test', { write: () => true }, 'error');
const NOW = new Date('2026-11-25T10:00:00Z');

function policy(name: string, action: string, extra: Partial<KubeObject> = {}): KubeObject {
  return { apiVersion: 'security.rondo.dev/v1alpha1', kind: 'AuthorizationPolicy', metadata: { name, namespace: 'demo', uid: `uid-${name}`, generation: 1 }, spec: { action, rules: [] }, ...extra };
}

t.test('plan: invalid -> Accepted=False with the reason; steady state and always-valid objects write nothing', (t) => {
  const store = new ObjectStore();
  store.upsert(policy('bad', 'ALOW'));
  store.upsert(policy('good', 'ALLOW'));
  store.upsert({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'demo' } });
  const invalid = [
    { kind: 'AuthorizationPolicy', namespace: 'demo', name: 'bad', reason: 'spec.action: invalid option' },
    { kind: 'Pod', namespace: 'demo', name: 'p', reason: 'no IP' },
  ];
  const plan = planStatus(store, invalid, new Map(), NOW);
  t.equal(plan.length, 1, 'only the Rondo CRD: never Pods, never valid objects without a False condition');
  t.same(plan[0]?.body, { status: { conditions: [{ type: 'Accepted', status: 'False', reason: 'Invalid', message: 'spec.action: invalid option', observedGeneration: 1, lastTransitionTime: '2026-11-25T10:00:00Z' }] } });
  t.same(planStatus(store, invalid, new Map([['AuthorizationPolicy/demo/bad', plan[0]?.signature ?? '']]), NOW), [], 'a write in flight is not repeated');
  // Once the object shows the condition, nothing more to do.
  store.upsert(policy('bad', 'ALOW', { status: plan[0]?.body.status }));
  t.same(planStatus(store, invalid, new Map(), NOW), [], 'observed == desired: no write');
  // Fixed (new generation): flips to True, other condition types are kept.
  const other = { type: 'Reconciled', status: 'True', reason: 'X', message: 'm', lastTransitionTime: '2026-01-01T00:00:00Z' };
  store.upsert(policy('bad', 'ALLOW', { metadata: { name: 'bad', namespace: 'demo', uid: 'uid-bad', generation: 2 }, status: { conditions: [other, ...(plan[0]?.body.status['conditions'] as unknown[])] } }));
  const flip = planStatus(store, [], new Map(), new Date('2026-11-25T11:00:00Z'));
  t.same(flip.map((p) => p.body.status['conditions']), [[other, { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'Accepted by the Rondo controller', observedGeneration: 2, lastTransitionTime: '2026-11-25T11:00:00Z' }]]);
  t.end();
});

t.test('plan: a route gets one entry per parentRef under our controllerName; other controllers\' entries stay', (t) => {
  const store = new ObjectStore();
  const foreign = { parentRef: { name: 'gw' }, controllerName: 'example.com/other', conditions: [] };
  store.upsert({
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'r', namespace: 'demo', generation: 3 },
    spec: { parentRefs: [{ group: '', kind: 'Service', name: 'web' }] }, status: { parents: [foreign] },
  });
  const plan = planStatus(store, [{ kind: 'HTTPRoute', namespace: 'demo', name: 'r', reason: 'backendRefs: unknown field' }], new Map(), NOW);
  t.match(plan[0]?.body.status['parents'], [foreign, { parentRef: { name: 'web', kind: 'Service' }, controllerName: CONTROLLER_NAME, conditions: [{ type: 'Accepted', status: 'False', reason: 'Invalid', message: 'backendRefs: unknown field', observedGeneration: 3 }] }]);
  t.end();
});

async function controllerOnDouble(t: Test, retryMs = { initial: 60_000, max: 60_000 }, clock?: Clock) {
  const api = await KubeApiDouble.create();
  t.teardown(() => api.close());
  const dir = mkdtempSync(join(tmpdir(), 'rondo-status-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ca = await CertificateAuthority.loadOrCreate({ dir, trustDomain: 'cluster.local', ttlSeconds: 3600 });
  const metrics = createControllerMetrics();
  // Every patch the writer starts (by name), and every write it finished, as events to await.
  const patched: string[] = [];
  const real = kubernetesPatcher(api.kubeConfig());
  let finished = 0;
  let waiters: (() => void)[] = [];
  const writes = (n: number): Promise<void> => new Promise((resolve) => {
    const check = (): void => { if (finished >= n) resolve(); else waiters.push(check); };
    check();
  });
  const writer = new KubernetesStatusWriter({
    patch: (p) => { patched.push(p.name); return real(p); }, log: quiet, retryMs, ...(clock !== undefined ? { clock } : {}),
    onWrite: (_p, ok) => {
      metrics.statusWrites.inc({ result: ok ? 'ok' : 'error' });
      finished++;
      const ws = waiters;
      waiters = [];
      for (const w of ws) w();
    },
  });
  const hooks: { onUpdate?: (store: StoreReader) => void } = {};
  const status: StatusWriter = {
    update: (store, invalid) => { writer.update(store, invalid); hooks.onUpdate?.(store); },
    close: () => writer.close(),
  };
  const ctl = await Controller.create({
    listen: '127.0.0.1', pushPort: 0, metricsPort: 0, trustDomain: 'cluster.local', debounceMs: 5,
    authenticator: new TokenFileAuthenticator({}), ca, log: quiet, metrics, status,
    sources: (sink) => [new KubernetesSource({ kubeConfig: api.kubeConfig(), sink, log: quiet, registry: metrics.registry, backoff: { initialMs: 10, maxMs: 20 }, healthyWatchMs: 60_000 })],
  });
  t.teardown(() => ctl.close());
  return { api, ctl, metrics, patched, writes, hooks };
}

async function until(pred: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error('timeout');
    await new Promise((r) => setTimeout(r, 10));
  }
}

type Cond = { type: string; status: string; reason: string; message: string; observedGeneration?: number };
const accepted = (o: Record<string, unknown> | undefined): Cond | undefined =>
  ((o?.['status'] as { conditions?: Cond[] } | undefined)?.conditions ?? []).find((c) => c.type === 'Accepted');

t.test('against the API double: an invalid policy gets Accepted=False once, flips to True when fixed, valid ones are untouched', async (t) => {
  const { api, metrics, patched, writes, hooks } = await controllerOnDouble(t);
  api.apply({ kind: 'AuthorizationPolicy', metadata: { name: 'good', namespace: 'demo' }, spec: { action: 'ALLOW', rules: [] } });
  api.apply({ kind: 'AuthorizationPolicy', metadata: { name: 'bad', namespace: 'demo' }, spec: { action: 'ALOW', rules: [] } });
  await until(() => accepted(api.get('AuthorizationPolicy', 'demo', 'bad'))?.status === 'False');
  const c = accepted(api.get('AuthorizationPolicy', 'demo', 'bad'));
  t.match(c, { reason: 'Invalid', message: /action/, observedGeneration: 1 });
  const patch = api.requests.find((r) => r.method === 'PATCH');
  t.equal(patch?.path, '/apis/security.rondo.dev/v1alpha1/namespaces/demo/authorizationpolicies/bad/status');
  t.equal(patch?.contentType, 'application/merge-patch+json');
  // The write comes back through the watch and triggers another build: it must not write again.
  // Once the first write finished the writer is idle, and it plans a build's writes within
  // update() itself, so by the time the build that saw the unrelated change reached it, any
  // write it wanted has been started.
  await writes(1);
  const sawOther = new Promise<void>((resolve) => {
    hooks.onUpdate = (store) => { if (store.get('Namespace', undefined, 'other') !== undefined) resolve(); };
  });
  api.apply({ kind: 'Namespace', metadata: { name: 'other' } }); // an unrelated change: one more build
  await sawOther;
  t.same(patched, ['bad'], 'one write; nothing for the valid policy, no storm');
  t.same(api.statusPatches.map((p) => p.name), ['bad']);

  api.apply({ kind: 'AuthorizationPolicy', metadata: { name: 'bad', namespace: 'demo' }, spec: { action: 'DENY', rules: [] } });
  await until(() => accepted(api.get('AuthorizationPolicy', 'demo', 'bad'))?.status === 'True');
  t.match(accepted(api.get('AuthorizationPolicy', 'demo', 'bad')), { reason: 'Accepted', observedGeneration: 2 });
  t.equal(api.statusPatches.length, 2);
  // The double applies the patch when it arrives; the controller counts the write when the
  // response comes back, a moment later.
  await until(async () => /rondo_controller_status_writes_total\{result="ok"\} 2/.test(await metrics.registry.metrics()));
  t.pass('both writes counted as ok');
});

t.test('a refused status write (RBAC) is counted and retried on the next change', async (t) => {
  const { api, metrics } = await controllerOnDouble(t);
  api.failNextStatusPatch(403);
  api.apply({ kind: 'PeerAuthentication', metadata: { name: 'pa', namespace: 'demo' }, spec: { mode: 'STRCT' } });
  await until(async () => /status_writes_total\{result="error"\} 1/.test(await metrics.registry.metrics()));
  t.equal(accepted(api.get('PeerAuthentication', 'demo', 'pa')), undefined);
  api.apply({ kind: 'Namespace', metadata: { name: 'poke' } });
  await until(() => accepted(api.get('PeerAuthentication', 'demo', 'pa'))?.status === 'False');
  t.pass('written after the next build');
});

t.test('a refused status write is retried after a doubling delay even when nothing else changes', async (t) => {
  const clock = new ManualClock();
  const { api, metrics, patched, writes } = await controllerOnDouble(t, { initial: 20, max: 40 }, clock);
  api.failNextStatusPatch(503, 503);
  api.apply({ kind: 'PeerAuthentication', metadata: { name: 'pa', namespace: 'demo' }, spec: { mode: 'STRCT' } });
  await writes(1);
  t.same(clock.pending().map((p) => p.delayMs), [20], 'first failure: retry in 20 ms');
  // advanceAsync: the failed write's bookkeeping finishes (one turn) before the retry fires.
  await clock.advanceAsync(19);
  t.same(patched, ['pa'], 'not before the delay');
  await clock.advanceAsync(1);
  t.same(patched, ['pa', 'pa'], 'retried at 20 ms');
  await writes(2);
  t.same(clock.pending().map((p) => p.delayMs), [40], 'second failure: the delay doubled');
  await clock.advanceAsync(40);
  await writes(3);
  t.equal(accepted(api.get('PeerAuthentication', 'demo', 'pa'))?.status, 'False', 'the third try was written');
  t.same(clock.pending(), [], 'no retry after a success');
  t.match(await metrics.registry.metrics(), /status_writes_total\{result="error"\} 2/, 'two failures, then the timer retry succeeded');
});

t.test('watch restarts from the Kubernetes source show on the controller\'s /metrics as {source, kind}', async (t) => {
  const { api, ctl } = await controllerOnDouble(t);
  await api.waitForRequest((r) => r.kind === 'Pod' && r.watch);
  const mark = api.requests.length;
  t.equal(api.dropWatches('Pod'), 1);
  await api.waitForRequest((r) => r.kind === 'Pod' && r.watch, mark);
  const text = await (await fetch(`http://127.0.0.1:${ctl.ports.http}/metrics`)).text();
  t.match(text, /rondo_controller_watch_restarts_total\{source="kubernetes",kind="Pod"\} 1/);
  t.match(text, /rondo_controller_watch_restarts_total\{source="kubernetes",kind="Namespace"\} 0/);
});


t.test('main.ts --kubeconfig runs on the Kubernetes API, shares the metrics registry and writes status', async (t) => {
  const api = await KubeApiDouble.create();
  t.teardown(() => api.close());
  const dir = mkdtempSync(join(tmpdir(), 'rondo-kmain-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'kubeconfig'), [
    'apiVersion: v1', 'kind: Config', 'current-context: d',
    `clusters: [{ name: d, cluster: { server: "${api.url}", insecure-skip-tls-verify: true } }]`,
    `users: [{ name: u, user: { token: ${api.token} } }]`,
    'contexts: [{ name: d, context: { cluster: d, user: u } }]',
  ].join('\n'));
  writeFileSync(join(dir, 'tokens.json'), '{}');
  api.apply({ kind: 'AuthorizationPolicy', metadata: { name: 'ap', namespace: 'demo' }, spec: { action: 'ALOW' } });
  const [metricsPort, pushPort] = [await freePort(), await freePort()];
  api.addServiceAccountToken('projected-sa-token', { namespace: 'rondo-system', name: 'rondo-node-agent', node: 'node-7', audiences: ['rondo'] });
  const child = spawn(process.execPath, [join(import.meta.dirname, '../../controller/main.ts'), '--kubeconfig', join(dir, 'kubeconfig'), '--listen', '127.0.0.1',
    '--ca-dir', join(dir, 'ca'), '--tokens', join(dir, 'tokens.json'), '--push-port', String(pushPort), '--metrics-port', String(metricsPort), '--debounce-ms', '5'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  t.teardown(() => { child.kill('SIGKILL'); });
  await until(async () => (await fetch(`http://127.0.0.1:${metricsPort}/healthz/ready`).then((r) => r.status, () => 0)) === 200, 10_000).catch((e: unknown) => { t.comment(stderr); throw e; });
  await api.waitForRequest((r) => r.kind === 'Pod' && r.watch);
  const mark = api.requests.length;
  api.dropWatches('Pod');
  await api.waitForRequest((r) => r.kind === 'Pod' && r.watch, mark);
  await until(async () => /watch_restarts_total\{source="kubernetes",kind="Pod"\} 1/.test(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()));
  await until(() => accepted(api.get('AuthorizationPolicy', 'demo', 'ap'))?.status === 'False');
  t.pass('restart counted on the controller registry; status written through the real client');
  // A node agent with its projected ServiceAccount token (no bootstrap token) gets config.
  const agent = new PushClient({
    url: `wss://127.0.0.1:${pushPort}`, token: 'projected-sa-token', proxy: { kind: 'node-agent', node: 'node-7' },
    caPems: [readFileSync(join(dir, 'ca', 'root-cert.pem'), 'utf8')], onConfig: () => undefined, log: quiet,
  });
  t.teardown(() => agent.close());
  agent.start();
  t.ok((await agent.ready()).version >= 1, 'authenticated by TokenReview, snapshot received');
});
