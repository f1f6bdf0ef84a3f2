import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync, unlinkSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileSource, parseManifests } from '../../controller/sources/files.ts';
import { ObjectStore } from '../../controller/store.ts';
import { createLogger } from '../../common/log.ts';

const quiet = createLogger('test', { write: () => true }, 'error');

t.test('parseManifests: multi-document YAML; a bad document is reported with file, line and field, others apply', (t) => {
  const text = [
    'apiVersion: v1',
    'kind: Namespace',
    'metadata: { name: demo }',
    '---',
    'apiVersion: v1',
    'kind: Pod',
    'metadata:',
    '  namespace: demo',
    '  labels: { app: 3 }',
    '---',
    'apiVersion: v1',
    'kind: Service',
    'metadata:',
    '  namespace: demo',
    '  name: web',
    '---',
    '',
  ].join('\n');
  const r = parseManifests('state/objs.yaml', text);
  t.same(r.objects.map((o) => `${o.kind}/${o.metadata.name}`), ['Namespace/demo', 'Service/web']);
  t.same(r.problems, [{ file: 'state/objs.yaml', line: 7, message: 'metadata.name: missing or not a string' }]);
  t.equal(r.fatal, false);

  const broken = parseManifests('x.yaml', 'apiVersion: v1\nkind: Pod\nmetadata: { name: [unclosed\n');
  t.equal(broken.fatal, true);
  t.match(broken.problems[0], { file: 'x.yaml', message: /^YAML: / });
  t.end();
});

t.test('FileSource reflects adds, changes and deletes; a file that stops parsing keeps its objects', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rondo-files-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'pods'));
  writeFileSync(join(dir, 'ns.yaml'), 'apiVersion: v1\nkind: Namespace\nmetadata: { name: demo }\n');
  const store = new ObjectStore();
  const changes: string[] = [];
  store.onChange((k) => changes.push(k));
  const problems: number[] = [];
  const src = new FileSource({ dir, sink: store, log: quiet, rescanMs: 0, settleMs: 5, onProblems: (p) => problems.push(p.length) });
  t.teardown(() => src.close());
  await src.start();
  t.ok(store.get('Namespace', undefined, 'demo'), 'initial scan');

  const podFile = join(dir, 'pods', 'a.yaml');
  const podYaml = (ip: string): string => `apiVersion: v1\nkind: Pod\nmetadata: { name: a, namespace: demo }\nstatus: { podIP: ${ip} }\n`;
  writeFileSync(podFile, podYaml('10.244.1.2'));
  await src.rescan();
  t.match(store.get('Pod', 'demo', 'a')?.status, { podIP: '10.244.1.2' }, 'add (in a subdirectory)');

  writeFileSync(podFile, podYaml('10.244.1.33'));
  await src.rescan();
  t.match(store.get('Pod', 'demo', 'a')?.status, { podIP: '10.244.1.33' }, 'change');

  writeFileSync(podFile, 'apiVersion: v1\nkind: Pod\nmetadata: { name: [\n');
  await src.rescan();
  t.match(store.get('Pod', 'demo', 'a')?.status, { podIP: '10.244.1.33' }, 'half-written file keeps the last good objects');
  t.ok(src.problems.length > 0, 'the parse error is reported');

  unlinkSync(podFile);
  await src.rescan();
  t.equal(store.get('Pod', 'demo', 'a'), undefined, 'delete');
  t.equal(src.problems.length, 0);

  const before = changes.length;
  await src.rescan();
  t.equal(changes.length, before, 'an unchanged directory causes no store change');
});

t.test('FileSource notices a new file through the watcher without an explicit rescan', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rondo-files-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = new ObjectStore();
  const src = new FileSource({ dir, sink: store, log: quiet, rescanMs: 200, settleMs: 5 });
  t.teardown(() => src.close());
  await src.start();
  const seen = new Promise<void>((resolve) => store.onChange(() => resolve()));
  writeFileSync(join(dir, 'svc.yaml'), 'apiVersion: v1\nkind: Service\nmetadata: { name: web, namespace: demo }\nspec: { clusterIP: 10.96.0.1 }\n');
  await seen;
  t.ok(store.get('Service', 'demo', 'web'));
});

t.test('FileSource refuses a missing directory with a clear error', async (t) => {
  const src = new FileSource({ dir: '/nonexistent/rondo-state', sink: new ObjectStore(), log: quiet });
  await t.rejects(src.start(), { code: 'RONDO_E_CONFIG', message: /--files/ });
});
