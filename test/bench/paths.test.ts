import t from 'tap';
import { PATHS, interleave, procKey, resolveTarget, selectPaths, unavailableReason } from '../../bench/paths.ts';
import { wrkArgv } from '../../bench/dataplane.ts';
import { parseBenchArgs, settleMs } from '../../bench/run.ts';

const lookup = {
  podIp: (r: string) => ({ 'bench-direct/server': '10.244.2.2', 'bench-mesh/server': '10.244.2.3' } as Record<string, string>)[r] ?? '10.244.1.9',
  serviceIp: () => '10.96.0.12',
  haproxyEntry: () => '10.250.0.11',
};

t.test('the path table has the issue\'s paths with unique names and sensible accounting', (t) => {
  const names = PATHS.map((p) => p.name);
  t.same(names, ['direct', 'direct-local', 'l4', 'l4-local', 'l7', 'haproxy']);
  t.equal(new Set(names).size, names.length);
  for (const p of PATHS) {
    t.equal(p.account.length === 0, p.hops === 0, `${p.name}: proxies accounted iff it has hops`);
    if (p.requires.includes('mesh')) t.match(p.client, /^bench-mesh\//, `${p.name} runs from the enrolled namespace`);
    else t.match(p.client, /^bench-direct\//, `${p.name} runs from outside the mesh`);
  }
  t.same(PATHS.find((p) => p.name === 'l4')!.account.map(procKey), ['node-agent/node-1', 'node-agent/node-2']);
  t.end();
});

t.test('selectPaths keeps table order and refuses unknown names by name', (t) => {
  t.same(selectPaths('haproxy,direct').map((p) => p.name), ['direct', 'haproxy']);
  t.equal(selectPaths(undefined).length, PATHS.length);
  t.throws(() => selectPaths('direct,l5'), /unknown path "l5".*known: direct/);
  t.end();
});

t.test('unavailableReason gives the first missing requirement', (t) => {
  const l7 = PATHS.find((p) => p.name === 'l7')!;
  t.equal(unavailableReason(l7, {}), undefined);
  t.equal(unavailableReason(l7, { waypoint: 'no waypoint' }), 'no waypoint');
  t.equal(unavailableReason(l7, { mesh: 'no agent', waypoint: 'no waypoint' }), 'no agent');
  t.equal(unavailableReason(PATHS[0]!, { mesh: 'no agent' }), undefined, 'direct needs nothing');
  t.end();
});

t.test('resolveTarget: pod IP on 8080, service VIP on 80, HAProxy entry on its own ports', (t) => {
  const by = (n: string) => resolveTarget(PATHS.find((p) => p.name === n)!, lookup);
  t.same(by('direct'), { ip: '10.244.2.2', httpPort: 8080, iperfPort: 5201 });
  t.same(by('l4'), { ip: '10.244.2.3', httpPort: 8080, iperfPort: 5201 });
  t.same(by('l7'), { ip: '10.96.0.12', httpPort: 80, iperfPort: 5201 });
  t.same(by('haproxy'), { ip: '10.250.0.11', httpPort: 18080, iperfPort: 15201 });
  t.end();
});

t.test('interleave rotates the order each round, every path once per round', (t) => {
  t.same(interleave(['a', 'b', 'c'], 0), ['a', 'b', 'c']);
  t.same(interleave(['a', 'b', 'c'], 1), ['b', 'c', 'a']);
  t.same(interleave(['a', 'b', 'c'], 4), ['b', 'c', 'a']);
  t.same(interleave([], 3), []);
  t.end();
});

t.test('wrk command lines: c=1 one thread, c=16 two threads, connection-per-request sends Connection: close', (t) => {
  const c1 = wrkArgv('c1', 'http://x/bytes/1024', 5);
  t.same(c1.slice(0, 4), ['wrk', '-t1', '-c1', '-d5s']);
  t.notOk(c1.includes('Connection: close'));
  t.ok(c1.some((a) => a.endsWith('wrk-json.lua')));
  const conn = wrkArgv('conn', 'http://x/bytes/1024', 1);
  t.same(conn.slice(0, 4), ['wrk', '-t2', '-c16', '-d1s']);
  t.ok(conn.includes('Connection: close'));
  t.equal(conn.at(-1), 'http://x/bytes/1024');
  t.end();
});

t.test('bench flags: defaults, --quick, and bad values named', (t) => {
  const d = parseBenchArgs([]);
  t.equal(d.seconds, 5);
  t.equal(d.rounds, 3);
  t.equal(d.controlPlane, true);
  t.equal(d.source, false, 'the mesh runs from a production build unless --source');
  t.equal(parseBenchArgs(['--source']).source, true);
  t.equal(settleMs(d), 60_000, 'memory waits for the agent to settle when the mesh is measured');
  t.equal(settleMs(parseBenchArgs(['--paths', 'direct,haproxy'])), 1_000, 'and not without it');
  t.equal(settleMs(parseBenchArgs(['--settle', '3'])), 3_000, '--settle overrides');
  t.throws(() => parseBenchArgs(['--settle', 'x']), /--settle "x"/);
  t.match(d.name, /^[a-z][a-z0-9]{0,7}$/);
  const q = parseBenchArgs(['--quick', '--paths', 'direct,haproxy', '--name', 'bx1']);
  t.same([q.seconds, q.rounds, q.controlPlane, q.name], [1, 1, false, 'bx1']);
  t.same(q.paths.map((p) => p.name), ['direct', 'haproxy']);
  t.throws(() => parseBenchArgs(['--seconds', 'abc']), /--seconds "abc"/);
  t.throws(() => parseBenchArgs(['--name', 'Bad-Name']), /--name "Bad-Name"/);
  t.throws(() => parseBenchArgs(['--bogus']), /bogus/);
  t.end();
});
