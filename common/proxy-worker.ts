/**
 * The worker side of the proxy process shell: a deployable's worker module (forked by
 * ProxyShell with node:cluster) calls runProxyWorker with its PlaneFactory. The worker binds
 * its own SO_REUSEPORT listeners, serves from the config and certificates the primary sends,
 * answers the primary's questions (open connections, metrics) and drains when told to.
 */
import tls from 'node:tls';
import { createLogger } from './log.ts';
import { RondoError, errorMessage } from './errors.ts';
import { installCrashHandlers } from './crash.ts';
import { IdleReclaimer } from './reclaim.ts';
import { WORKER_ID_ENV } from './proxy-protocol.ts';
import type { CertEntry, FromWorker, PlaneFactory, ProxyCert, ProxyPlane, ToWorker, WorkerArgs } from './proxy-protocol.ts';

/** Rebuilds SecureContexts only for certificates that changed (building one costs ~1 ms). */
export class WorkerCerts {
  #byIdentity = new Map<string, { entry: CertEntry; cert: ProxyCert }>();

  /** Applies a full certificate set; returns the current certificates. */
  update(entries: readonly CertEntry[]): ProxyCert[] {
    const next = new Map<string, { entry: CertEntry; cert: ProxyCert }>();
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

/** Options of runProxyWorker. */
export interface ProxyWorkerOptions<Settings> {
  /** Logger component of the deployable (`node-agent`): the worker logs as `<component>.worker-<n>`. */
  component: string;
  /** Builds this worker's data plane. */
  create: PlaneFactory<Settings>;
}

/**
 * Runs this process as one data-path worker of a ProxyShell: resolves once the plane serves
 * and the primary was told so. A plane that fails to start is reported to the primary as
 * 'fatal' with its error code, and the worker exits 1.
 */
export async function runProxyWorker<Settings>(o: ProxyWorkerOptions<Settings>): Promise<void> {
  const send = process.send?.bind(process);
  if (send === undefined) throw new RondoError('RONDO_E_WORKER', 'a proxy worker runs only as a node:cluster worker forked by ProxyShell (no IPC channel here)');
  const reply = (m: FromWorker, then?: () => void): void => { send(m, undefined, undefined, () => then?.()); };
  const args = JSON.parse(process.argv[2] ?? '{}') as WorkerArgs<Settings>;
  const log = createLogger(`${o.component}.worker-${process.env[WORKER_ID_ENV] ?? process.pid}`);
  // Errors on one connection stay on its sockets; anything that escapes ends this worker
  // and the primary forks a clean one (its listeners' share goes to the others meanwhile).
  installCrashHandlers({ log });
  let plane: ProxyPlane;
  try {
    plane = await o.create({ log, settings: args.settings, reusePort: true });
  } catch (e) {
    const code = (e as { code?: unknown } | null)?.code;
    // Exit only once the message is out: the primary reports this reason, not a bare exit.
    reply({ type: 'fatal', message: errorMessage(e), ...(typeof code === 'string' ? { code } : {}) }, () => process.exit(1));
    return;
  }
  if (args.idleReclaimS > 0) new IdleReclaimer({ log, quietChecks: args.idleReclaimS }).start();
  const certs = new WorkerCerts();
  process.on('message', (m: ToWorker) => {
    try {
      switch (m.type) {
        case 'config': plane.setConfig(m.config); break;
        case 'certs': plane.setCerts(certs.update(m.certs)); break;
        case 'drain': void plane.close(m.deadlineMs).then(() => process.exit(0)); break;
        case 'req':
          if (m.what === 'connections') reply({ type: 'res', id: m.id, connections: plane.connections() });
          else {
            plane.registry.getMetricsAsJSON().then((j) => { reply({ type: 'res', id: m.id, metrics: j }); }, (e: unknown) => {
              log.error('worker metrics could not be collected', { error: e });
              reply({ type: 'res', id: m.id });
            });
          }
          break;
      }
    } catch (e) {
      // A config this worker cannot apply must not kill it: it keeps serving the last good one.
      log.error('worker could not apply a message', { type: m.type, error: e });
    }
  });
  // The primary handles SIGTERM and tells us to drain; a signal sent to the whole group is ignored here.
  process.on('SIGTERM', () => undefined);
  process.on('SIGINT', () => undefined);
  // The primary is gone (crashed or killed): nobody will send a drain, so stop now.
  process.on('disconnect', () => { void plane.close(0).then(() => process.exit(0)); });
  reply({ type: 'ready', ports: plane.ports });
}
