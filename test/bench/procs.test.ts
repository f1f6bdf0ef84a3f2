import t from 'tap';
import { cpuDelta, descendants, parsePss, sampleGroups, statParent, sumGroup } from '../../bench/procs.ts';

t.test('descendants walks the whole tree below a root and nothing else', (t) => {
  const parents = new Map([[10, 1], [11, 10], [12, 11], [13, 10], [20, 1], [21, 20]]);
  t.same(descendants(10, parents).sort((a, b) => a - b), [10, 11, 12, 13]);
  t.same(descendants(21, parents), [21]);
  t.end();
});

t.test('statParent reads ppid and a command name with spaces and parentheses', (t) => {
  const stat = '4242 (node (worker) x) S 4200 4242 4200 0 -1 4194560 1 0 0 0 7 3 0 0 20 0 11 0 999 0 0';
  t.same(statParent(stat), { ppid: 4200, comm: 'node (worker) x' });
  t.end();
});

t.test('sumGroup adds real processes and leaves the sh/ip wrappers out', (t) => {
  const g = sumGroup([
    { pid: 1, comm: 'sh', cpuSeconds: 5, rssBytes: 100, hwmBytes: 100, pssBytes: 100 },
    { pid: 2, comm: 'node', cpuSeconds: 1.5, sysSeconds: 1, rssBytes: 1000, hwmBytes: 2000, pssBytes: 600 },
    { pid: 3, comm: 'node', cpuSeconds: 0.5, rssBytes: 500, hwmBytes: 700, pssBytes: 300 },
  ]);
  t.same(g, { cpuSeconds: 2, sysSeconds: 1, rssBytes: 1500, hwmBytes: 2700, pssBytes: 900, pids: [2, 3] });
  t.end();
});

t.test('parsePss reads smaps_rollup', (t) => {
  t.equal(parsePss('Rss:  2048 kB\nPss:    1024 kB\nPss_Anon: 10 kB\n'), 1024 * 1024);
  t.equal(parsePss(''), 0);
  t.end();
});

t.test('cpuDelta never goes negative and treats a new group as zero', (t) => {
  const s = (cpu: number) => ({ cpuSeconds: cpu, sysSeconds: cpu / 2, rssBytes: 0, hwmBytes: 0, pssBytes: 0, pids: [] });
  const d = cpuDelta(new Map([['a', s(1)], ['b', s(5)]]), new Map([['a', s(1.25)], ['b', s(4)], ['c', s(9)]]));
  t.same(Object.fromEntries(d), { a: 0.25, b: 0, c: 0 });
  const k = cpuDelta(new Map([['a', s(1)]]), new Map([['a', s(1.5)]]), 'sysSeconds');
  t.same(Object.fromEntries(k), { a: 0.25 }, 'the kernel part alone');
  t.end();
});

t.test('sampleGroups reads this very process from /proc', (t) => {
  const s = sampleGroups(new Map([['me', process.pid], ['gone', 0x7ffffff0]])).get('me')!;
  t.ok(s.pids.includes(process.pid));
  t.ok(s.rssBytes > 10 * 1024 * 1024, 'a node process has some RSS');
  t.ok(s.pssBytes > 0 && s.pssBytes <= s.rssBytes + 4096);
  t.end();
});
