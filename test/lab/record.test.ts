import t from 'tap';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { RunRecord } from '../../lab/record.ts';

t.test('the record is durable at each step, refuses a second lab of the same name, reloads', (t) => {
  const dir = join(t.testdir(), 'l1');
  const r = RunRecord.create(dir, 'l1');
  r.add({ kind: 'netns', name: 'l1-br' });
  t.match(JSON.parse(readFileSync(join(dir, 'record.json'), 'utf8')), { entries: [{ kind: 'netns', name: 'l1-br' }] }, 'written before anything is created');
  t.throws(() => RunRecord.create(dir, 'l1'), { code: 'RONDO_E_LAB_EXISTS', message: /rondo lab down --name l1/ });
  r.replaceProcess({ kind: 'process', role: 'pod', name: 'pod/a/b', pid: 1, startTime: '1', log: 'x' });
  r.replaceProcess({ kind: 'process', role: 'pod', name: 'pod/a/b', pid: 2, startTime: '2', log: 'x' });
  const again = RunRecord.load(dir, 'l1');
  t.equal(again.entries.length, 2);
  t.match(again.entries[1], { pid: 2 });
  t.throws(() => RunRecord.load(join(dir, 'nope'), 'nope'), { code: 'RONDO_E_LAB_NOT_FOUND' });
  t.end();
});
