import t from 'tap';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { runLoad } from '../../lab/demo/load-client.ts';
import { startEcho } from './helpers.ts';

const MAIN = fileURLToPath(new URL('../../lab/demo/main.ts', import.meta.url));

t.test('client summary counts statuses and answering pod in each mode', async (t) => {
  let i = 0;
  // Every 4th request fails: the summary must show exactly 5 of 20.
  const s = await startEcho(t, { behaviour: { failRate: 0.5, failStatus: 503, latencyMs: 0 }, random: () => (i++ % 4 === 0 ? 0 : 0.9) });
  for (const mode of ['http1', 'h2c', 'grpc'] as const) {
    i = 0;
    const r = await runLoad({ url: `http://127.0.0.1:${s.port}/`, requests: 20, concurrency: 3, mode, headers: { 'x-test': mode }, timeoutMs: 5000 });
    const ok = mode === 'grpc' ? '0' : '200';
    const bad = mode === 'grpc' ? '14' : '503';
    t.same(r.statuses, { [ok]: 15, [bad]: 5 }, `${mode} statuses`);
    t.same(r.pods, { 'backend-v1-0': 20 }, `${mode} pods`);
    t.same(r.versions, { v1: 20 });
    t.same(r.errors, {});
    t.equal(r.completed, 20);
    t.ok(r.latencyMs.p50 > 0 && r.latencyMs.p50 <= r.latencyMs.p99 && r.latencyMs.p99 <= r.latencyMs.max, `${mode} percentiles ordered`);
  }
});

t.test('client counts errors instead of throwing: refused connections and timeouts', async (t) => {
  const s = await startEcho(t);
  const port = s.port;
  const slow = await runLoad({ url: `http://127.0.0.1:${port}/`, requests: 2, concurrency: 2, mode: 'h2c', headers: { 'x-demo-delay-ms': '500' }, timeoutMs: 30 });
  t.same(slow.errors, { RONDO_E_DEMO_TIMEOUT: 2 });
  const slow1 = await runLoad({ url: `http://127.0.0.1:${port}/`, requests: 1, concurrency: 1, mode: 'http1', headers: { 'x-demo-delay-ms': '500' }, timeoutMs: 30 });
  t.same(slow1.errors, { RONDO_E_DEMO_TIMEOUT: 1 });
  await s.close(100);
  for (const mode of ['http1', 'h2c', 'grpc'] as const) {
    const r = await runLoad({ url: `http://127.0.0.1:${port}/`, requests: 3, concurrency: 2, mode, headers: {}, timeoutMs: 1000 });
    t.equal(r.completed, 0);
    t.same(r.errors, { ECONNREFUSED: 3 }, `${mode} refused`);
  }
});

t.test('the client command prints one JSON summary line', async (t) => {
  const s = await startEcho(t);
  const child = spawn(process.execPath, [MAIN, 'client', `http://127.0.0.1:${s.port}/bytes/1024`, '-n', '10', '-c', '2', '--h2c'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => { child.kill(); });
  let out = '';
  child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
  const [code] = await once(child, 'exit') as [number];
  t.equal(code, 0);
  t.match(JSON.parse(out), { mode: 'h2c', requests: 10, completed: 10, statuses: { 200: 10 }, pods: { 'backend-v1-0': 10 } });
});

t.test('echo command serves, and SIGTERM shuts it down cleanly', async (t) => {
  const child = spawn(process.execPath, [MAIN, 'echo', '--port', '0', '--host', '127.0.0.1'], {
    stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, POD_NAME: 'cli-pod', APP_VERSION: 'v9' },
  });
  t.teardown(() => { child.kill('SIGKILL'); });
  let err = '';
  const port = await new Promise<number>((resolve, reject) => {
    child.stderr.on('data', (c: Buffer) => {
      err += c.toString();
      const m = /"msg":"echo listening".*?"port":(\d+)/.exec(err);
      if (m !== null) resolve(Number(m[1]));
    });
    child.once('exit', () => reject(new Error(`echo exited early: ${err}`)));
  });
  const r = await runLoad({ url: `http://127.0.0.1:${port}/`, requests: 4, concurrency: 1, mode: 'http1', headers: {}, timeoutMs: 5000 });
  t.same(r.pods, { 'cli-pod': 4 });
  t.same(r.versions, { v9: 4 });
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const [code] = await exited as [number];
  t.equal(code, 0, 'exit 0 after SIGTERM');
});

t.test('bad flags exit 2 with the reason and usage', async (t) => {
  const child = spawn(process.execPath, [MAIN, 'echo', '--fail-rate', '7'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (c: Buffer) => { err += c.toString(); });
  const [code] = await once(child, 'exit') as [number];
  t.equal(code, 2);
  t.match(err, /--fail-rate must be a number between 0 and 1/);
  t.match(err, /usage:/);
});

t.test('tcp-echo and tcp-client commands talk to each other', async (t) => {
  const server = spawn(process.execPath, [MAIN, 'tcp-echo', '--port', '0', '--host', '127.0.0.1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => { server.kill('SIGKILL'); });
  let err = '';
  const port = await new Promise<number>((resolve, reject) => {
    server.stderr.on('data', (c: Buffer) => {
      err += c.toString();
      const m = /"msg":"tcp-echo listening".*?"port":(\d+)/.exec(err);
      if (m !== null) resolve(Number(m[1]));
    });
    server.once('exit', () => reject(new Error(`tcp-echo exited early: ${err}`)));
  });
  const client = spawn(process.execPath, [MAIN, 'tcp-client', '127.0.0.1', String(port), 'ping over tcp'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  client.stdout.on('data', (c: Buffer) => { out += c.toString(); });
  const [code] = await once(client, 'exit') as [number];
  t.equal(code, 0);
  t.equal(out, 'ping over tcp');
  const exited = once(server, 'exit');
  server.kill('SIGTERM');
  t.equal((await exited as [number])[0], 0, 'tcp-echo exits 0 on SIGTERM');
});
