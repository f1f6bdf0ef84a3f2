/**
 * Property-style: after any sequence of cluster changes, and whichever versions a (slow)
 * proxy happens to receive, the proxy's view equals the controller's snapshot for it.
 */
import t from 'tap';
import { ObjectStore } from '../../controller/store.ts';
import { ModelBuilder, forProxy } from '../../controller/model/build.ts';
import { diffViews, viewResources } from '../../controller/push/view.ts';
import type { ProxyView } from '../../controller/push/view.ts';
import { applyDelta, applySnapshot } from '../../common/push-client.ts';
import type { ProxyConfig } from '../../common/proxy-config.ts';
import { DeltaMessage, RESOURCE_TYPES, SnapshotMessage } from '../../common/wire.ts';
import type { ProxyIdentity } from '../../common/wire.ts';
import { namespace, pod, service, slice, authz } from './fixtures/objects.ts';

/** Small deterministic PRNG (mulberry32) so a failure is reproducible from its seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

function randomChange(store: ObjectStore, r: () => number): void {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const ns = pick(['a', 'b']);
  const n = Math.floor(r() * 6);
  switch (Math.floor(r() * 8)) {
    case 0: store.upsert(pod(ns, `p${n}`, `10.244.${n}.${1 + Math.floor(r() * 200)}`, { node: pick(['node-1', 'node-2']) })); break;
    case 1: store.remove('Pod', ns, `p${n}`); break;
    case 2: store.upsert(pod(ns, `p${n}`, undefined, { phase: 'Pending' })); break;
    case 3: store.upsert(namespace(ns, r() < 0.5 ? {} : { 'rondo.dev/dataplane-mode': 'ambient', ...(r() < 0.3 ? { 'rondo.dev/use-waypoint': 'wp' } : {}) })); break;
    case 4: store.upsert(service(ns, `s${n % 3}`, `10.96.${n}.${n + 1}`, r() < 0.3 ? { labels: { 'rondo.dev/use-waypoint': 'wp' } } : {})); break;
    case 5: store.upsert(slice(ns, `s${n % 3}`, [[`10.244.${n}.9`, `uid-${ns}-p${n}`, r() < 0.7]])); break;
    case 6: store.remove('Service', ns, `s${n % 3}`); break;
    case 7: store.upsert(authz(ns, `pol${n % 2}`, r() < 0.2 ? { action: 'NOPE' } : { action: pick(['ALLOW', 'DENY']), rules: [{ from: [{ source: { namespaces: [ns] } }] }] })); break;
  }
}

function asJson(v: ProxyView | ProxyConfig): string {
  const res = 'resources' in v ? v.resources : v;
  const out: Record<string, unknown> = { mesh: v.mesh };
  for (const type of RESOURCE_TYPES) out[type] = [...(res[type])].sort(([a], [b]) => a.localeCompare(b));
  return JSON.stringify(out);
}

function runSequence(seed: number, proxy: ProxyIdentity): { ok: boolean; steps: number } {
  const r = rng(seed);
  const store = new ObjectStore();
  const builder = new ModelBuilder({ trustDomain: 'cluster.local', trustBundle: ['ROOT'] });
  let version = 1;
  let sent = forProxy(builder.build(store), proxy);
  // Round-trip through JSON and the wire schemas, as the real transport does.
  const snap = SnapshotMessage.parse(JSON.parse(JSON.stringify({ type: 'snapshot', version, nonce: 'n', mesh: sent.mesh, resources: viewResources(sent) })));
  let cfg = applySnapshot(snap).config;
  for (let step = 0; step < 60; step++) {
    const burst = 1 + Math.floor(r() * 4);
    for (let i = 0; i < burst; i++) randomChange(store, r);
    const view = forProxy(builder.build(store), proxy);
    version++;
    // A slow proxy misses some versions: it then gets one delta from what it last had.
    if (r() < 0.4 && step < 59) continue;
    const d = diffViews(sent, view);
    const msg = DeltaMessage.parse(JSON.parse(JSON.stringify({ type: 'delta', version, nonce: 'n', ...(d.mesh !== undefined ? { mesh: d.mesh } : {}), upserts: d.upserts, removes: d.removes })));
    cfg = applyDelta(cfg, msg).config;
    sent = view;
    if (asJson(cfg) !== asJson(view)) return { ok: false, steps: step };
  }
  return { ok: true, steps: 60 };
}

t.test('a proxy view converges to the controller snapshot after any change sequence', (t) => {
  for (let seed = 1; seed <= 40; seed++) {
    for (const proxy of [{ kind: 'node-agent', node: 'node-1' }, { kind: 'waypoint', namespace: 'a', name: 'wp' }] as ProxyIdentity[]) {
      const res = runSequence(seed, proxy);
      if (!res.ok) t.fail(`seed ${seed} ${proxy.kind}: diverged at step ${res.steps}`);
    }
  }
  t.pass('80 random sequences of 60 bursts converged');
  t.end();
});
