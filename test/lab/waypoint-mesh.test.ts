// The lab's side of a waypoint that needs no root: its command line, its bootstrap token, the
// state lock between `rondo lab apply` and the watcher, and how `status` shows it.
import t from 'tap';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { addWaypointToken, meshEntry, removeWaypointToken, waypointArgv, writeTokens } from '../../lab/mesh.ts';
import { withStateLock } from '../../lab/state-lock.ts';
import { formatStatus } from '../../lab/cli.ts';
import { parseLabSpec } from '../../lab/spec.ts';
import { planLab } from '../../lab/plan.ts';
import { TokenFileAuthenticator } from '../../controller/push/auth.ts';

const plan = planLab(parseLabSpec('apiVersion: lab.rondo.dev/v1\nkind: Lab\nmetadata: { name: m1 }\nspec: { nodes: 2 }\n', 'm.yaml'));

t.test('the waypoint command line is the contract\'s, with the profiling knobs', (t) => {
  const o = { node: 'node', repo: '/r', runDir: '/run/x', plan, namespace: 'demo', name: 'wp', tokenFile: '/run/x/tokens/w.token' };
  t.same(waypointArgv(o, {}), ['node', '/r/waypoint/main.ts', '--namespace', 'demo', '--name', 'wp', '--controller', '10.250.0.2:15012',
    '--token-file', '/run/x/tokens/w.token', '--ca-file', '/run/x/ca/root-cert.pem']);
  const argv = waypointArgv(o, { RONDO_WAYPOINT_NODE_OPTIONS: ' --cpu-prof ', RONDO_WAYPOINT_ARGS: '--drain-ms 100', RONDO_MESH_DIST: '/r/dist' });
  t.same(argv.slice(0, 3), ['node', '--cpu-prof', '/r/dist/waypoint/main.js'], 'Node flags before the script; the build with RONDO_MESH_DIST');
  t.same(argv.slice(-2), ['--drain-ms', '100']);
  t.equal(meshEntry('/r', 'waypoint', {}), '/r/waypoint/main.ts');
  t.end();
});

t.test('a waypoint token joins tokens.json (which the controller follows) and leaves it on delete', async (t) => {
  const dir = t.testdir();
  writeTokens(dir, plan);
  const auth = await TokenFileAuthenticator.load(join(dir, 'tokens.json'), { recheckMs: 0 });
  const file = addWaypointToken(dir, 'demo', 'wp');
  t.equal(file, join(dir, 'tokens', 'waypoint.demo.wp.token'));
  t.equal(statSync(file).mode & 0o777, 0o600);
  t.equal(statSync(join(dir, 'tokens.json')).mode & 0o777, 0o600);
  const token = readFileSync(file, 'utf8').trim();
  t.match(token, /^[0-9a-f]{64}$/);
  t.same(await auth.authenticate({ token, remoteAddress: 'x' }), { kind: 'waypoint', namespace: 'demo', name: 'wp' }, 'the running controller accepts it');
  const table = JSON.parse(readFileSync(join(dir, 'tokens.json'), 'utf8')) as Record<string, { kind: string }>;
  t.same(Object.values(table).map((v) => v.kind).sort(), ['node-agent', 'node-agent', 'waypoint'], 'the agents\' tokens stay');
  const again = addWaypointToken(dir, 'demo', 'wp');
  t.not(readFileSync(again, 'utf8').trim(), token, 'a new token on re-creation');
  t.equal(Object.keys(JSON.parse(readFileSync(join(dir, 'tokens.json'), 'utf8')) as object).length, 3, 'the old one is dropped');
  removeWaypointToken(dir, 'demo', 'wp');
  t.notOk(existsSync(file));
  t.same(Object.values(JSON.parse(readFileSync(join(dir, 'tokens.json'), 'utf8')) as { kind: string }[]).map((v) => v.kind), ['node-agent', 'node-agent']);
  await t.rejects(auth.authenticate({ token, remoteAddress: 'x' }), { code: 'RONDO_E_AUTH' }, 'and the controller refuses it');
  removeWaypointToken(dir, 'demo', 'wp');
  writeFileSync(join(dir, 'tokens.json'), '{');
  t.throws(() => addWaypointToken(dir, 'demo', 'wp'), { code: 'RONDO_E_CONFIG', message: /cannot read the lab's token file .*tokens\.json/ });
});

t.test('the state lock serializes holders, and a dead holder\'s lock is taken over', async (t) => {
  const dir = t.testdir();
  const order: string[] = [];
  let release!: () => void;
  const first = withStateLock(dir, async () => { order.push('a in'); await new Promise<void>((r) => { release = r; }); order.push('a out'); });
  const second = withStateLock(dir, () => { order.push('b'); });
  await new Promise((r) => setImmediate(r));
  t.same(order, ['a in'], 'b waits');
  release();
  await Promise.all([first, second]);
  t.same(order, ['a in', 'a out', 'b']);
  t.notOk(existsSync(join(dir, 'state.lock')), 'released');

  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
  mkdirSync(join(dir, 'state.lock'));
  writeFileSync(join(dir, 'state.lock', 'pid'), dead);
  t.equal(await withStateLock(dir, () => 'taken over'), 'taken over');

  mkdirSync(join(dir, 'state.lock'));
  writeFileSync(join(dir, 'state.lock', 'pid'), String(process.pid));
  await t.rejects(withStateLock(dir, () => 'never', { timeoutMs: 40, sleep: () => Promise.resolve() }),
    { code: 'RONDO_E_LAB_NOT_READY', message: new RegExp(`state lock .*state\\.lock is held by pid ${process.pid} for more than 0\\.04s`) });
  await t.rejects(withStateLock(dir, () => { throw new Error('x'); }, { timeoutMs: 0, sleep: () => Promise.resolve() }), { code: 'RONDO_E_LAB_NOT_READY' });
});

t.test('the state lock is released when the holder throws', async (t) => {
  const dir = t.testdir();
  await t.rejects(withStateLock(dir, () => { throw new Error('boom'); }), { message: 'boom' });
  t.notOk(existsSync(join(dir, 'state.lock')));
});

t.test('status lists waypoint pods', (t) => {
  const base = { name: 'l', runDir: '/run/rondo/l', nodes: [], pods: [], services: [], mesh: [] };
  const s = formatStatus({ ...base, waypoints: [{ namespace: 'demo', gateway: 'wp', pod: 'wp-abc-def', node: 'node-2', ip: '10.244.2.3', serviceIP: '10.96.0.11', netns: 'l-w1', phase: 'Running', state: 'running', log: '/run/rondo/l/logs/waypoint.demo.wp.log' }] });
  t.match(s, /WAYPOINT\s+POD\s+NODE\s+IP\s+SERVICE IP\s+PHASE\s+PROCESS\s+LOG/);
  t.match(s, /demo\/wp\s+wp-abc-def\s+node-2\s+10\.244\.2\.3\s+10\.96\.0\.11\s+Running\s+running\s+\/run\/rondo\/l\/logs\/waypoint\.demo\.wp\.log/);
  t.notMatch(formatStatus({ ...base, waypoints: [] }), /WAYPOINT/);
  t.end();
});
