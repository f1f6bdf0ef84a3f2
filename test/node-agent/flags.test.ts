import t from 'tap';
import { parseAgentFlags, defaultWorkers, parseAgentCommand } from '../../node-agent/flags.ts';

const base = ['--node', 'node-1', '--controller', '10.250.0.2:15012', '--token-file', '/run/t', '--ca-file', '/run/ca.pem'];

t.test('contract flags parse with defaults', (t) => {
  const f = parseAgentFlags(base);
  t.match(f, { node: 'node-1', controller: '10.250.0.2:15012', tokenFile: '/run/t', caFile: '/run/ca.pem', adminPort: 15000, metricsPort: 15020, drainMs: 10000, idleReclaimS: 30 });
  t.equal(parseAgentFlags([...base, '--idle-reclaim-s', '0']).idleReclaimS, 0, '0 turns the idle reclaimer off');
  t.ok(f.workers >= 0);
  t.equal(parseAgentFlags([...base, '--workers', '0']).workers, 0);
  t.equal(parseAgentFlags([...base, '--workers', '3']).workers, 3);
  t.end();
});

t.test('default workers: data path in-process on small nodes, one worker per core up to 4 above', (t) => {
  t.equal(defaultWorkers(1), 0);
  t.equal(defaultWorkers(2), 0);
  t.equal(defaultWorkers(3), 3);
  t.equal(defaultWorkers(16), 4);
  t.end();
});

t.test('bad flags are named', (t) => {
  t.throws(() => parseAgentFlags(base.slice(2)), /--node is required/);
  t.throws(() => parseAgentFlags([...base, '--bogus', 'x']), /bogus/);
  t.throws(() => parseAgentFlags([...base, '--workers', 'many']), /--workers must be an integer/);
  t.throws(() => parseAgentFlags([...base, '--idle-reclaim-s', 'soon']), /--idle-reclaim-s must be an integer/);
  t.throws(() => parseAgentFlags(['--node', 'n', '--controller', 'ctl:15012', '--token-file', 'x', '--ca-file', 'y']), /--controller must be <ip>:<port>/);
  t.end();
});

t.test('main.ts exits 2 with the usage on a bad command line', async (t) => {
  const { spawnSync } = await import('node:child_process');
  const r = spawnSync(process.execPath, [new URL('../../node-agent/main.ts', import.meta.url).pathname, '--node', 'n'], { encoding: 'utf8', timeout: 20000 });
  t.equal(r.status, 2);
  t.match(r.stderr, /--controller is required\nusage: node node-agent\/main.ts/);
});

t.test('--cleanup-on-exit is off unless given; --uninstall stands alone', (t) => {
  t.equal(parseAgentFlags(base).cleanupOnExit, false, 'rules stay by default: pods fail closed while the agent restarts');
  t.equal(parseAgentFlags([...base, '--cleanup-on-exit']).cleanupOnExit, true);
  t.same(parseAgentCommand(['--uninstall']), { kind: 'uninstall' });
  t.same(parseAgentCommand(base), { kind: 'run', flags: parseAgentFlags(base) });
  t.throws(() => parseAgentCommand(['--uninstall', '--node', 'node-1']), { code: 'RONDO_E_INVALID', message: /--uninstall takes no other flag.*--node node-1/ });
  t.end();
});
