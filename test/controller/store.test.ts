import t from 'tap';
import { ObjectStore } from '../../controller/store.ts';
import { pod, namespace } from './fixtures/objects.ts';

t.test('upsert of an equal object keeps the stored reference and signals nothing', (t) => {
  const s = new ObjectStore();
  const kinds: string[] = [];
  s.onChange((k) => kinds.push(k));
  const a = pod('demo', 'a', '10.244.1.2');
  s.upsert(a);
  s.upsert(pod('demo', 'a', '10.244.1.2'));
  t.equal(s.get('Pod', 'demo', 'a'), a);
  t.same(kinds, ['Pod']);
  s.upsert(pod('demo', 'a', '10.244.1.3'));
  t.same(kinds, ['Pod', 'Pod']);
  s.remove('Pod', 'demo', 'a');
  s.remove('Pod', 'demo', 'a');
  t.same(kinds, ['Pod', 'Pod', 'Pod'], 'removing an unknown object is a no-op');
  t.equal(s.list('Pod').size, 0);
  t.end();
});

t.test('replaceAll (a re-list): equal objects keep references, missing ones go, one signal only on change', (t) => {
  const s = new ObjectStore();
  const kinds: string[] = [];
  s.onChange((k) => kinds.push(k));
  const a = pod('demo', 'a', '10.244.1.2');
  const b = pod('demo', 'b', '10.244.1.3');
  s.replaceAll('Pod', [a, b]);
  t.same(kinds, ['Pod']);
  s.replaceAll('Pod', [pod('demo', 'a', '10.244.1.2'), pod('demo', 'b', '10.244.1.3')]);
  t.same(kinds, ['Pod'], 'identical re-list: no change');
  t.equal(s.get('Pod', 'demo', 'a'), a);
  s.replaceAll('Pod', [pod('demo', 'a', '10.244.1.2')]);
  t.same(kinds, ['Pod', 'Pod']);
  t.equal(s.get('Pod', 'demo', 'b'), undefined);
  t.equal(s.get('Pod', 'demo', 'a'), a);
  const ns = namespace('demo');
  s.upsert({ ...ns, metadata: { ...ns.metadata, resourceVersion: '5' } });
  const again = { ...ns, metadata: { ...ns.metadata, resourceVersion: '5', labels: {} } };
  s.upsert(again);
  t.equal(s.get('Namespace', undefined, 'demo')?.metadata.labels?.['rondo.dev/dataplane-mode'], 'ambient', 'same resourceVersion: same object');
  t.end();
});
