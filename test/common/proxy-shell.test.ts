// The proxy process shell with a fake plane: in-process, and with two real node:cluster
// workers (config and certificates reach each, a killed worker comes back with the current
// ones, metrics are summed without the primary-only series, drain closes every plane, a
// worker that cannot start is reported with its error code).
import t from 'tap';
import type { Test } from 'tap';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Counter, Gauge, Registry } from 'prom-client';
import { createLogger } from '../../common/log.ts';
import { ProxyShell, siblingModule } from '../../common/proxy-shell.ts';
import { WorkerCerts } from '../../common/proxy-worker.ts';
import type { ProxyConfig } from '../../common/proxy-config.ts';
import type { ProxyCert } from '../../common/proxy-protocol.ts';
import { fakePlane } from './proxy-shell-plane.ts';
import type { FakeConn, FakePorts, FakeSettings } from './proxy-shell-plane.ts';
import { createTestPki, dataPlaneCert } from './hbone-fixtures.ts';

const logs: Record<string, unknown>[] = [];
const log = createLogger('test', { write: (l: string) => logs.push(JSON.parse(l) as Record<string, unknown>) });
const entry = new URL('./proxy-shell-plane.ts', import.meta.url);

function config(version: number): ProxyConfig {
  return {
    version, mesh: { trustDomain: 'cluster.local', trustBundle: ['-'], rootNamespace: 'rondo-system' },
    workloads: new Map(), services: new Map(), authorizationPolicies: new Map(), peerAuthentications: new Map(), l7: new Map(),
  };
}

/** The primary's registry: its own gauge of the primary-only name, and a counter of its own. */
function primaryRegistry(): Registry {
  const r = new Registry();
  new Gauge({ name: 'fake_primary_gauge', help: 'primary only', registers: [r] }).set(7);
  new Counter({ name: 'fake_primary_total', help: 'own', registers: [r] }).inc(3);
  return r;
}

function tmp(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'rondo-shell-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const pki = createTestPki();
t.teardown(() => pki.cleanup());
const certA = dataPlaneCert(pki, 'a');
const certB = dataPlaneCert(pki, 'b');

t.test('siblingModule picks the suffix the caller runs with', (t) => {
  t.equal(siblingModule('file:///app/node-agent/agent.ts', 'worker'), './worker.ts');
  t.equal(siblingModule('file:///app/dist/node-agent/agent.js', 'worker'), './worker.js');
  t.end();
});

t.test('in-process: the plane runs here, gets config and certificates, its metrics join the primary', async (t) => {
  const dir = tmp(t);
  const shell = await ProxyShell.create<FakeSettings, FakePorts, FakeConn>({
    log, workers: 0, plane: fakePlane, workerEntry: entry, settings: { dir }, registry: primaryRegistry(),
    primaryOnlyMetrics: new Set(['fake_primary_gauge']),
  });
  t.same(shell.ports, { pid: process.pid }, 'ports are the in-process plane\'s');
  t.same(shell.workers(), [], 'no workers');
  shell.setConfig(config(4));
  shell.setCerts([certA]);
  t.match(await shell.connections(), [{ pid: process.pid, worker: undefined, reusePort: false, version: 4, identities: [certA.identity], contexts: true }]);
  const text = await shell.metricsText();
  t.match(text, /^fake_configs_total 1$/m, 'the plane\'s counter');
  t.match(text, /^fake_primary_total 3$/m, 'the primary\'s own');
  t.match(text, /^fake_primary_gauge 7$/m, 'primary-only series from the primary alone');
  await shell.close(123);
  t.equal(readFileSync(join(dir, `closed-${process.pid}`), 'utf8'), '123', 'close drains the plane with the deadline');
});

t.test('in-process, sharing the primary\'s registry: /metrics is that registry as is', async (t) => {
  const registry = primaryRegistry();
  const shell = await ProxyShell.create<FakeSettings, FakePorts, FakeConn>({
    log, workers: 0, workerEntry: entry, settings: { dir: tmp(t) }, registry,
    plane: async (o) => ({ ...(await fakePlane(o)), registry }),
  });
  t.equal(await shell.metricsText(), await registry.metrics());
  await shell.close(0);
});

t.test('a worker count that is not a whole number is refused', async (t) => {
  await t.rejects(ProxyShell.create({ log, workers: 1.5, plane: fakePlane, workerEntry: entry, settings: { dir: '/nonexistent' }, registry: new Registry() }),
    { code: 'RONDO_E_CONFIG', message: /workers must be a whole number/ });
});

t.test('two workers: config and certificates reach each, a killed worker returns with the current ones, metrics summed, drain', async (t) => {
  const dir = tmp(t);
  const ready: { index: number; pid: number }[] = [];
  let onReady: (() => void) | undefined;
  const shell = await ProxyShell.create<FakeSettings, FakePorts, FakeConn>({
    log, workers: 2, plane: fakePlane, workerEntry: entry, settings: { dir }, registry: primaryRegistry(),
    primaryOnlyMetrics: new Set(['fake_primary_gauge']), idleReclaimS: 0, restartDelayMs: 10,
    onWorkerReady: (index, pid) => { ready.push({ index, pid }); onReady?.(); },
  });
  t.teardown(() => shell.close(0));
  const first = shell.workers();
  t.same(first.map((w) => w.index), [0, 1], 'both workers serve once create() resolves');
  t.same(ready.map((r) => r.index).sort(), [0, 1], 'each reported ready once');
  t.ok(first.every((w) => w.pid !== process.pid && w.pid > 0), 'in their own processes');
  t.match(shell.ports, { pid: Number }, 'ports reported by a worker');

  shell.setConfig(config(1));
  shell.setConfig(config(2));
  shell.setCerts([certA, certB]);
  const byWorker = (cs: FakeConn[]): FakeConn[] => [...cs].sort((a, b) => (a.worker ?? '').localeCompare(b.worker ?? ''));
  t.match(byWorker(await shell.connections()), [
    { worker: '0', reusePort: true, version: 2, identities: [certA.identity, certB.identity], contexts: true },
    { worker: '1', reusePort: true, version: 2, identities: [certA.identity, certB.identity], contexts: true },
  ], 'each worker serves the latest config and built every certificate');

  const text = await shell.metricsText();
  t.match(text, /^fake_configs_total 4$/m, 'two configs in each of two workers, summed');
  t.match(text, /^fake_primary_total 3$/m, 'the primary\'s own series');
  t.match(text, /^fake_primary_gauge 7$/m, 'the primary-only gauge is the primary\'s alone (workers hold 1000 each)');

  // SIGTERM goes to the whole process group in a pod: workers leave it to the primary. The
  // question below is read only after the signal was delivered to the worker.
  process.kill(first[0]!.pid, 'SIGTERM');
  t.equal((await shell.connections()).length, 2, 'a worker ignores SIGTERM');

  const victim = first[1]!;
  const back = new Promise<void>((resolve) => { onReady = () => { if (ready.some((r) => r.index === 1 && r.pid !== victim.pid)) resolve(); }; });
  process.kill(victim.pid, 'SIGKILL');
  await back;
  const now = shell.workers();
  t.equal(now.find((w) => w.index === 1)?.pid === victim.pid, false, 'worker 1 runs in a new process');
  t.match(logs.find((l) => l['msg'] === 'data-path worker died; restarting it'), { worker: 1, signal: 'SIGKILL' }, 'the crash is logged');
  t.match(byWorker(await shell.connections()), [
    { worker: '0', version: 2 },
    { worker: '1', version: 2, identities: [certA.identity, certB.identity], contexts: true },
  ], 'the restarted worker got the current config and certificates');

  shell.setConfig(config(3));
  t.match(byWorker(await shell.connections()), [{ version: 3 }, { version: 3 }], 'later configs reach the restarted worker too');

  const pids = shell.workers().map((w) => w.pid);
  await shell.close(250);
  t.same(shell.workers(), [], 'every worker exited');
  for (const pid of pids) t.equal(readFileSync(join(dir, `closed-${pid}`), 'utf8'), '250', `worker ${pid} drained its plane with the deadline`);
});

t.test('a worker that cannot start fails create() with its error code; the others are stopped', async (t) => {
  const dir = tmp(t);
  const started: number[] = [];
  await t.rejects(ProxyShell.create<FakeSettings, FakePorts, FakeConn>({
    log, workers: 2, plane: fakePlane, workerEntry: entry, settings: { dir, failWorker: '1', failCode: 'RONDO_E_LISTEN' },
    registry: new Registry(), idleReclaimS: 0, onWorkerReady: (_i, pid) => started.push(pid),
  }), { code: 'RONDO_E_LISTEN', message: /data-path worker 1 failed to start: cannot bind 127\.0\.0\.1:15001: address in use/ });
  t.equal(started.length, 1, 'worker 0 had started');
  t.ok(existsSync(join(dir, `closed-${started[0]}`)), 'and was drained when start-up failed');
});

t.test('WorkerCerts builds a SecureContext only for a certificate that changed', (t) => {
  const wc = new WorkerCerts();
  const entry = (c: ProxyCert): { identity: string; keyPem: string; chain: string[]; trustBundle: string[]; notAfter: string } =>
    ({ identity: c.identity, keyPem: c.keyPem, chain: [...c.chain], trustBundle: [...c.trustBundle], notAfter: c.notAfter.toISOString() });
  const [a1, b1] = wc.update([entry(certA), entry(certB)]);
  t.equal(a1?.notAfter.toISOString(), certA.notAfter.toISOString());
  const renewed = dataPlaneCert(pki, 'b');
  const [a2, b2] = wc.update([entry(certA), entry(renewed)]);
  t.equal(a2?.secureContext, a1?.secureContext, 'unchanged: the same context');
  t.not(b2?.secureContext, b1?.secureContext, 'renewed: a new one');
  t.same(wc.update([entry(renewed)]).map((c) => c.identity), [renewed.identity], 'a certificate left out is dropped');
  t.end();
});
