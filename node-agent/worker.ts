/**
 * Entry point of one data-path worker (forked by the agent's primary with node:cluster):
 * binds its own SO_REUSEPORT listeners, serves from the config and certificates the primary
 * sends, and drains when told to.
 */
import tls from 'node:tls';
import { createLogger } from '../common/log.ts';
import { errorMessage } from '../common/errors.ts';
import { installCrashHandlers } from '../common/crash.ts';
import { AgentState } from './state.ts';
import { AgentMetrics } from './metrics.ts';
import { DataPlane, STREAM_HIGH_WATER_MARK } from './dataplane.ts';
import { setDefaultHighWaterMark } from 'node:stream';
import type { DataPlaneCert } from './dataplane.ts';
import { createAccessLog } from '../common/access-log.ts';
import { IdleReclaimer } from '../common/reclaim.ts';
import type { CertMessageEntry, FromWorker, ToWorker, WorkerSettings } from './worker-protocol.ts';

/** Rebuilds SecureContexts only for certificates that changed (building one costs ~1 ms). */
export class WorkerCerts {
  #byIdentity = new Map<string, { entry: CertMessageEntry; cert: DataPlaneCert }>();

  /** Applies a full certificate set; returns the current certificates. */
  update(entries: CertMessageEntry[]): DataPlaneCert[] {
    const next = new Map<string, { entry: CertMessageEntry; cert: DataPlaneCert }>();
    for (const e of entries) {
      const prev = this.#byIdentity.get(e.identity);
      if (prev !== undefined && prev.entry.keyPem === e.keyPem && prev.entry.chain.join() === e.chain.join() && prev.entry.trustBundle.join() === e.trustBundle.join()) {
        next.set(e.identity, prev);
        continue;
      }
      const secureContext = tls.createSecureContext({ key: e.keyPem, cert: e.chain.join('\n'), ca: e.trustBundle, minVersion: 'TLSv1.3' });
      next.set(e.identity, { entry: e, cert: { identity: e.identity, keyPem: e.keyPem, chain: e.chain, trustBundle: e.trustBundle, notAfter: new Date(e.notAfter), secureContext } });
    }
    this.#byIdentity = next;
    return [...next.values()].map((v) => v.cert);
  }
}

async function main(): Promise<void> {
  setDefaultHighWaterMark(false, STREAM_HIGH_WATER_MARK);
  const send = (m: FromWorker): void => { process.send?.(m); };
  const settings = JSON.parse(process.argv[2] ?? '{}') as WorkerSettings;
  const log = createLogger(`node-agent.worker-${process.env['RONDO_WORKER_ID'] ?? process.pid}`);
  // Errors on one connection stay on its sockets; anything that escapes ends this worker
  // and the primary forks a clean one (its listeners' share goes to the others meanwhile).
  installCrashHandlers({ log });
  const metrics = new AgentMetrics();
  const certs = new WorkerCerts();
  const accessLog = createAccessLog();
  process.once('exit', () => accessLog.flush());
  let dp: DataPlane;
  try {
    dp = await DataPlane.create({
      log, metrics, host: settings.host, ports: settings.ports, reusePort: true,
      accessLog, connectTimeoutMs: settings.connectTimeoutMs, poolIdleMs: settings.poolIdleMs,
    });
  } catch (e) {
    send({ type: 'fatal', message: errorMessage(e), ...(typeof (e as { code?: unknown }).code === 'string' ? { code: (e as { code: string }).code } : {}) });
    process.exit(1);
  }
  if (settings.idleReclaimS > 0) new IdleReclaimer({ log, quietChecks: settings.idleReclaimS }).start();
  process.on('message', (m: ToWorker) => {
    try {
      switch (m.type) {
        case 'config': dp.setState(AgentState.build(m.config, settings.node)); break;
        case 'certs': dp.setCerts(certs.update(m.certs)); break;
        case 'drain': void dp.close(m.deadlineMs).then(() => process.exit(0)); break;
        case 'req':
          if (m.what === 'connections') send({ type: 'res', id: m.id, connections: dp.connections() });
          else void metrics.registry.getMetricsAsJSON().then((j) => send({ type: 'res', id: m.id, metrics: j }));
          break;
      }
    } catch (e) {
      // A config this worker cannot index must not kill it: keep serving the last good one.
      log.error('worker could not apply a message', { type: m.type, error: e });
    }
  });
  // The primary handles SIGTERM and tells us to drain; a signal sent to the whole group is ignored here.
  process.on('SIGTERM', () => undefined);
  process.on('SIGINT', () => undefined);
  process.on('disconnect', () => { void dp.close(0).then(() => process.exit(0)); });
  send({ type: 'ready', ports: dp.ports });
}

if (process.send !== undefined) void main();
