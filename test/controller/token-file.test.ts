import t from 'tap';
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TokenFileAuthenticator } from '../../controller/push/auth.ts';
import { ManualClock } from '../../common/clock.ts';

const req = (token: string | undefined) => ({ token, remoteAddress: '10.250.0.11' });
const agent1 = { 'node-1-token-0123456789': { kind: 'node-agent', node: 'node-1' } };
const waypoint = { 'waypoint-token-0123456789': { kind: 'waypoint', namespace: 'demo', name: 'wp' } };

/** Replaces the file as the lab does (tmp + rename). */
function writeTokens(file: string, table: unknown): void {
  writeFileSync(`${file}.tmp`, JSON.stringify(table));
  renameSync(`${file}.tmp`, file);
}

t.test('a token added to the file after start is accepted once the recheck period has passed', async (t) => {
  const file = join(t.testdir(), 'tokens.json');
  writeTokens(file, agent1);
  const clock = new ManualClock(1_000_000);
  const auth = await TokenFileAuthenticator.load(file, { recheckMs: 1000, clock });
  t.same(await auth.authenticate(req('node-1-token-0123456789')), { kind: 'node-agent', node: 'node-1' });
  writeTokens(file, { ...agent1, ...waypoint });
  clock.advance(999);
  await t.rejects(auth.authenticate(req('waypoint-token-0123456789')), { code: 'RONDO_E_AUTH', message: /unknown bearer token from 10\.250\.0\.11$/ },
    'within the period the file is not looked at (a flood of bad tokens costs nothing)');
  clock.advance(1);
  t.same(await auth.authenticate(req('waypoint-token-0123456789')), { kind: 'waypoint', namespace: 'demo', name: 'wp' });
  t.same(await auth.authenticate(req('node-1-token-0123456789')), { kind: 'node-agent', node: 'node-1' }, 'the old tokens stay');
});

t.test('a token removed from the file stops working; an in-place write is seen too', async (t) => {
  const file = join(t.testdir(), 'tokens.json');
  writeTokens(file, { ...agent1, ...waypoint });
  const clock = new ManualClock(0);
  const auth = await TokenFileAuthenticator.load(file, { recheckMs: 500, clock });
  t.ok(await auth.authenticate(req('waypoint-token-0123456789')));
  writeFileSync(file, JSON.stringify(agent1));
  clock.advance(500);
  await t.rejects(auth.authenticate(req('waypoint-token-0123456789')), { code: 'RONDO_E_AUTH' });
  t.ok(await auth.authenticate(req('node-1-token-0123456789')));
});

t.test('a file that becomes invalid keeps the previous tokens and the refusal says why', async (t) => {
  const file = join(t.testdir(), 'tokens.json');
  writeTokens(file, agent1);
  const clock = new ManualClock(0);
  const auth = await TokenFileAuthenticator.load(file, { recheckMs: 100, clock });
  writeTokens(file, { short: { kind: 'node-agent', node: 'node-2' } });
  clock.advance(100);
  t.ok(await auth.authenticate(req('node-1-token-0123456789')), 'previous tokens in use');
  await t.rejects(auth.authenticate(req('another-token-0123456789')), { message: /unknown bearer token .*token file .*tokens\.json is invalid: short: .*previous tokens stay in use/ });
  writeTokens(file, { ...agent1, ...waypoint });
  clock.advance(100);
  t.ok(await auth.authenticate(req('waypoint-token-0123456789')), 'a fixed file is read again');
  await t.rejects(auth.authenticate(req('another-token-0123456789')), { message: /unknown bearer token from 10\.250\.0\.11$/ });
});

t.test('concurrent authentications share one look at the file', async (t) => {
  const file = join(t.testdir(), 'tokens.json');
  writeTokens(file, agent1);
  const clock = new ManualClock(0);
  const auth = await TokenFileAuthenticator.load(file, { recheckMs: 10, clock });
  writeTokens(file, { ...agent1, ...waypoint });
  clock.advance(10);
  const rs = await Promise.all([1, 2, 3].map(() => auth.authenticate(req('waypoint-token-0123456789'))));
  t.same(rs.map((r) => r.kind), ['waypoint', 'waypoint', 'waypoint']);
});

t.test('fixed tokens (no file) and a missing token', async (t) => {
  const auth = new TokenFileAuthenticator(agent1 as never);
  await t.rejects(auth.authenticate(req(undefined)), { code: 'RONDO_E_AUTH', message: 'no bearer token from 10.250.0.11' });
  await t.rejects(auth.authenticate(req('nope-nope-nope-nope')), { code: 'RONDO_E_AUTH' });
  await t.rejects(TokenFileAuthenticator.load(join(t.testdir(), 'missing.json')), { code: 'RONDO_E_CONFIG', message: /cannot read token file .*missing\.json/ });
});
