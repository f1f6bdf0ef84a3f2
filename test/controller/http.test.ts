// The controller's :15014 endpoint: /metrics and /healthz/ready for anyone, /debug/* only for
// the controller's own host or the holder of the debug token. A refusal from another network
// namespace over real sockets is in test/e2e/controller-debug-access.test.ts.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { createHttpEndpoint, debugRefusal, loadDebugToken } from '../../controller/http.ts';
import { createLogger } from '../../common/log.ts';

const quiet = createLogger('test', { write: () => true }, 'error');
const TOKEN = 'debug-token-0123456789';
const from = (remoteAddress: string | undefined, localAddress = '10.250.0.2', authorization?: string) => ({ remoteAddress, localAddress, authorization });

t.test('the controller\'s own host is served without a token', (t) => {
  for (const remote of ['127.0.0.1', '127.3.4.5', '::1', '::ffff:127.0.0.1']) t.equal(debugRefusal(from(remote), undefined), undefined, `loopback ${remote}`);
  t.equal(debugRefusal(from('10.250.0.2'), undefined), undefined, 'from the address it was sent to: the same network namespace');
  t.equal(debugRefusal(from('::ffff:10.250.0.2', '10.250.0.2'), undefined), undefined, 'mapped and plain forms of the same address');
  t.end();
});

t.test('another address is refused, and the reason says how to get in', (t) => {
  t.match(debugRefusal(from('10.250.0.11'), undefined), /^\/debug\/\* is not served to 10\.250\.0\.11: .*kubectl port-forward.*--debug-token-file/);
  t.match(debugRefusal(from('10.250.0.11', '10.250.0.2', `Bearer ${TOKEN}`), undefined), /not served to 10\.250\.0\.11/, 'a bearer token means nothing when none is configured');
  t.match(debugRefusal(from(undefined), undefined), /not served to an unknown address/);
  t.match(debugRefusal(from('10.244.1.5'), TOKEN), /Authorization: Bearer <token>/, 'no token sent');
  t.match(debugRefusal(from('10.244.1.5', '10.250.0.2', 'Bearer debug-token-01234567890'), TOKEN), /^wrong debug token from 10\.244\.1\.5/);
  t.match(debugRefusal(from('10.244.1.5', '10.250.0.2', 'Basic ZGVidWc6eA=='), TOKEN), /^wrong debug token/);
  t.end();
});

t.test('the debug token opens /debug/* from anywhere', (t) => {
  t.equal(debugRefusal(from('10.244.1.5', '10.250.0.2', `Bearer ${TOKEN}`), TOKEN), undefined);
  t.equal(debugRefusal(from('10.244.1.5', '10.250.0.2', `bearer  ${TOKEN} `), TOKEN), undefined, 'scheme case and spacing as HTTP allows');
  t.end();
});

t.test('--debug-token-file: one token of 16+ characters, else a clear error', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rondo-debug-token-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'ok'), `${TOKEN}\n`);
  t.equal(loadDebugToken(join(dir, 'ok')), TOKEN);
  writeFileSync(join(dir, 'short'), 'short\n');
  t.throws(() => loadDebugToken(join(dir, 'short')), { code: 'RONDO_E_CONFIG', message: /must hold one token of 16 or more characters.*got 5/ });
  writeFileSync(join(dir, 'two'), `${TOKEN} ${TOKEN}\n`);
  t.throws(() => loadDebugToken(join(dir, 'two')), { code: 'RONDO_E_CONFIG', message: /without spaces/ });
  t.throws(() => loadDebugToken(join(dir, 'missing')), { code: 'RONDO_E_CONFIG', message: /--debug-token-file .*missing cannot be read/ });
  t.end();
});

t.test('over a real socket on loopback: metrics, health and debug answer', async (t) => {
  const registry = new Registry();
  const ep = await createHttpEndpoint('127.0.0.1', 0, { registry, ready: () => true, debug: { version: () => ({ version: 7 }) }, log: quiet, debugToken: TOKEN });
  t.teardown(() => ep.close());
  const base = `http://127.0.0.1:${ep.port}`;
  t.equal((await fetch(`${base}/metrics`)).status, 200);
  t.equal((await fetch(`${base}/healthz/ready`)).status, 200);
  t.same(await (await fetch(`${base}/debug/version`)).json(), { version: 7 }, 'local: no token needed even when one is configured');
  t.equal((await fetch(`${base}/debug/nope`)).status, 404);
});
