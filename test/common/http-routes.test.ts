import t from 'tap';
import type { AddressInfo } from 'node:net';
import { createLogger } from '../../common/log.ts';
import { json, serveRoutes } from '../../common/http-routes.ts';

const log = createLogger('test', { write: () => true });

t.test('GET routes answer; others are 404/405 naming the routes; a failing route is a 500', async (t) => {
  const server = await serveRoutes({
    host: '127.0.0.1', port: 0, log, what: 'admin',
    routes: {
      '/ready': () => Promise.resolve(json({ ready: true })),
      '/dump': () => Promise.resolve(json({ m: new Map([['a', 1]]) }, 203)),
      '/boom': () => Promise.reject(new Error('state not built')),
    },
  });
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const ready = await fetch(`${base}/ready?verbose`);
  t.equal(ready.status, 200);
  t.same(await ready.json(), { ready: true }, 'the query does not change the route');
  const dump = await fetch(`${base}/dump`);
  t.equal(dump.status, 203);
  t.same(await dump.json(), { m: { a: 1 } }, 'Maps are dumped as objects');
  const missing = await fetch(`${base}/nope`);
  t.equal(missing.status, 404);
  t.match(await missing.text(), /routes: \/ready \/dump \/boom/);
  t.equal((await fetch(`${base}/ready`, { method: 'POST' })).status, 405);
  const boom = await fetch(`${base}/boom`);
  t.equal(boom.status, 500);
  t.match(await boom.text(), /state not built/);
});

t.test('a taken port fails loudly with RONDO_E_LISTEN', async (t) => {
  const first = await serveRoutes({ host: '127.0.0.1', port: 0, log, what: 'metrics', routes: {} });
  t.teardown(() => new Promise<void>((r) => first.close(() => r())));
  const port = (first.address() as AddressInfo).port;
  await t.rejects(serveRoutes({ host: '127.0.0.1', port, log, what: 'metrics', routes: {} }),
    { code: 'RONDO_E_LISTEN', message: new RegExp(`cannot listen for metrics on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`) });
});
