// A tiny data plane for the proxy-shell tests: it binds nothing, records what the shell gave
// it (reported through connections()), counts configs in its own registry and writes a file
// when drained. Also the worker entry those tests fork (argv from the shell).
import cluster from 'node:cluster';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Counter, Gauge, Registry } from 'prom-client';
import { RondoError, isErrorCode } from '../../common/errors.ts';
import { runProxyWorker } from '../../common/proxy-worker.ts';
import type { PlaneFactory, ProxyCert } from '../../common/proxy-protocol.ts';

export interface FakeSettings {
  /** Where a drained plane writes `closed-<pid>` holding its deadline. */
  dir: string;
  /** Worker index (RONDO_WORKER_ID) whose plane fails to start, with `failCode`. */
  failWorker?: string;
  failCode?: string;
}

export interface FakePorts { pid: number }

/** What a plane holds, as the test reads it back. */
export interface FakeConn {
  pid: number;
  worker: string | undefined;
  reusePort: boolean;
  version: number | undefined;
  identities: string[];
  /** Every certificate came with a SecureContext and a Date expiry (built in the worker). */
  contexts: boolean;
}

export const fakePlane: PlaneFactory<FakeSettings, FakePorts, FakeConn> = (o) => {
  const worker = process.env['RONDO_WORKER_ID'];
  const s = o.settings;
  if (s.failWorker !== undefined && s.failWorker === worker) {
    const code = s.failCode ?? 'RONDO_E_LISTEN';
    return Promise.reject(new RondoError(isErrorCode(code) ? code : 'RONDO_E_LISTEN', 'cannot bind 127.0.0.1:15001: address in use'));
  }
  const registry = new Registry();
  const configs = new Counter({ name: 'fake_configs_total', help: 'configs applied', registers: [registry] });
  // The primary reports this one itself; a worker's copy must not be added to it.
  new Gauge({ name: 'fake_primary_gauge', help: 'primary only', registers: [registry] }).set(1000);
  let version: number | undefined;
  let certs: readonly ProxyCert[] = [];
  return Promise.resolve({
    ports: { pid: process.pid },
    registry,
    setConfig: (c) => { version = c.version; configs.inc(); },
    setCerts: (cs) => { certs = cs; },
    connections: () => [{
      pid: process.pid, worker, reusePort: o.reusePort, version, identities: certs.map((c) => c.identity),
      contexts: certs.every((c) => typeof (c.secureContext as { context?: unknown }).context === 'object' && c.notAfter instanceof Date),
    }],
    close: (deadlineMs) => {
      writeFileSync(join(s.dir, `closed-${process.pid}`), String(deadlineMs));
      return Promise.resolve();
    },
  });
};

if (cluster.isWorker) await runProxyWorker({ component: 'fake-proxy', create: fakePlane });
