import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ObjectStore } from '../../controller/store.ts';
import { buildSnapshot } from '../../controller/model/build.ts';
import { planStatus, CONTROLLER_NAME } from '../../controller/status/conditions.ts';
import { KubernetesStatusWriter, kubernetesPatcher } from '../../controller/status/status-writer.ts';
import { Controller } from '../../controller/controller.ts';
import { CertificateAuthority } from '../../controller/ca.ts';
import { TokenFileAuthenticator } from '../../controller/push/auth.ts';
import { KubernetesSource } from '../../controller/sources/kubernetes.ts';
import { createControllerMetrics } from '../../controller/metrics.ts';
import { createLogger } from '../../common/log.ts';
import type { KubeObject } from '../../controller/sources/types.ts';
import { KubeApiDouble } from '../helpers/kube-api-double.ts';

const quiet = createLogger('test', { write: () => true }, 'error');
const NOW = new Date('2026-11-25T10:00:00Z');
const mesh = { trustDomain: 'cluster.local', trustBundle: ['ROOT'] };
const web = { group: '', kind: 'Service', name: 'web' };

function route(name: string, spec: unknown, status?: unknown): KubeObject {
  return { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name, namespace: 'demo', uid: `uid-${name}`, generation: 2 }, spec, ...(status !== undefined ? { status } : {}) };
}
const gateway = (name: string, cls: string): KubeObject => ({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name, namespace: 'demo' }, spec: { gatewayClassName: cls } });

type Parent = { parentRef: unknown; controllerName: string; conditions: { type: string; status: string; reason: string; message: string }[] };

t.test('an invalid route: Accepted=False naming the field on each of its Rondo parents only; other controllers\' entries stay', (t) => {
  const store = new ObjectStore();
  store.upsert(gateway('ingress', 'istio'));
  store.upsert(gateway('wp', 'rondo-waypoint'));
  const foreign = { parentRef: { name: 'ingress' }, controllerName: 'istio.io/gateway-controller', conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: 'ok' }] };
  store.upsert(route('r', { parentRefs: [{ name: 'ingress' }, web, { name: 'wp' }], rules: [{ matches: [{ path: { type: 'Exact', value: 'api' } }] }] }, { parents: [foreign] }));
  store.upsert(route('ext', { parentRefs: [web], rules: [{ filters: [{ type: 'ExtensionRef', extensionRef: { kind: 'F', name: 'f' } }] }] }));
  store.upsert(route('fine', { parentRefs: [web] }));
  const snap = buildSnapshot(store, mesh);
  const plan = planStatus(store, snap.invalid, new Map(), NOW);
  t.same(plan.map((p) => p.name).sort(), ['ext', 'r'], 'the valid route is not written');
  const parents = plan.find((p) => p.name === 'r')?.body.status['parents'] as Parent[];
  t.same(parents.map((p) => [p.controllerName, p.parentRef]), [
    ['istio.io/gateway-controller', { name: 'ingress' }],
    [CONTROLLER_NAME, web],
    [CONTROLLER_NAME, { name: 'wp' }],
  ], 'no Rondo entry for the other implementation\'s Gateway');
  t.match(parents[1]?.conditions, [{ type: 'Accepted', status: 'False', reason: 'Invalid', message: /^spec: rules\.0\.matches\.0\.path\.value: must be an absolute path starting with '\/'/ }]);
  const ext = plan.find((p) => p.name === 'ext')?.body.status['parents'] as Parent[];
  t.match(ext[0]?.conditions, [{ status: 'False', reason: 'UnsupportedValue', message: /ExtensionRef filters are not supported/ }], 'an unimplemented feature: the Gateway API reason');
  t.end();
});

t.test('a route only for another implementation\'s Gateway is never written, however it looks to Rondo', (t) => {
  const store = new ObjectStore();
  store.upsert(gateway('ingress', 'istio'));
  store.upsert(route('cors', { parentRefs: [{ name: 'ingress' }], rules: [{ filters: [{ type: 'CORS', cors: {} }] }] }));
  const snap = buildSnapshot(store, mesh);
  t.same(snap.invalid, []);
  // Even handed an invalid entry for it, the planner has no parent of ours to write on.
  t.same(planStatus(store, [{ kind: 'HTTPRoute', namespace: 'demo', name: 'cors', reason: 'x' }], new Map(), NOW), []);
  t.end();
});

t.test('against the API double: an invalid HTTPRoute shows in status and /debug/invalid; fixed, it flips to Accepted=True', async (t) => {
  const api = await KubeApiDouble.create();
  t.teardown(() => api.close());
  const dir = mkdtempSync(join(tmpdir(), 'rondo-route-status-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ca = await CertificateAuthority.loadOrCreate({ dir, trustDomain: 'cluster.local', ttlSeconds: 3600 });
  const metrics = createControllerMetrics();
  const status = new KubernetesStatusWriter({ patch: kubernetesPatcher(api.kubeConfig()), log: quiet, retryMs: { initial: 60_000, max: 60_000 } });
  const ctl = await Controller.create({
    listen: '127.0.0.1', pushPort: 0, metricsPort: 0, trustDomain: 'cluster.local', debounceMs: 5,
    authenticator: new TokenFileAuthenticator({}), ca, log: quiet, metrics, status,
    sources: (sink) => [new KubernetesSource({ kubeConfig: api.kubeConfig(), sink, log: quiet, registry: metrics.registry, backoff: { initialMs: 10, maxMs: 20 }, healthyWatchMs: 60_000 })],
  });
  t.teardown(() => ctl.close());
  const ours = (): Parent | undefined => ((api.get('HTTPRoute', 'demo', 'r')?.['status'] as { parents?: Parent[] } | undefined)?.parents ?? []).find((p) => p.controllerName === CONTROLLER_NAME);
  const until = async (pred: () => boolean): Promise<void> => {
    const end = Date.now() + 5000;
    while (!pred()) {
      if (Date.now() > end) throw new Error('timeout');
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  api.apply({ kind: 'HTTPRoute', metadata: { name: 'r', namespace: 'demo' }, spec: { parentRefs: [web], rules: [{ backendRefs: [{ name: 'web', port: 80, weight: 2_000_000 }] }] } });
  await until(() => ours()?.conditions[0]?.status === 'False');
  t.match(ours()?.conditions[0], { reason: 'Invalid', message: /rules\.0\.backendRefs\.0\.weight: Too big/ });
  const inv = (await (await fetch(`http://127.0.0.1:${ctl.ports.http}/debug/invalid`)).json()) as { kind: string; name: string; reason: string }[];
  t.match(inv, [{ kind: 'HTTPRoute', name: 'r', reason: /backendRefs\.0\.weight/ }]);
  t.notOk(ctl.snapshot?.resources.l7.has('HTTPRoute/demo/r'), 'not pushed');
  api.apply({ kind: 'HTTPRoute', metadata: { name: 'r', namespace: 'demo' }, spec: { parentRefs: [web], rules: [{ backendRefs: [{ name: 'web', port: 80, weight: 2 }] }] } });
  await until(() => ours()?.conditions[0]?.status === 'True');
  t.ok(ctl.snapshot?.resources.l7.has('HTTPRoute/demo/r'), 'pushed once valid');
});
