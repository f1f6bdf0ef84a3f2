/** Entry point of the controller process (see the contract: flags, ports, CA directory). */
import { createLogger } from '../common/log.ts';
import { RondoError, errorMessage } from '../common/errors.ts';
import { parseControllerFlags } from './flags.ts';
import { CertificateAuthority } from './ca.ts';
import { TokenFileAuthenticator } from './push/auth.ts';
import { FileSource } from './sources/files.ts';
import { Controller } from './controller.ts';
import { createControllerMetrics } from './metrics.ts';
import { KubernetesSource, loadKubeConfig } from './sources/kubernetes.ts';

async function main(): Promise<void> {
  const log = createLogger('controller');
  const flags = parseControllerFlags(process.argv.slice(2));
  const ca = await CertificateAuthority.loadOrCreate({ dir: flags.caDir, trustDomain: flags.trustDomain, ttlSeconds: flags.certTtlSeconds });
  const authenticator = await TokenFileAuthenticator.load(flags.tokens);
  const kubeconfig = flags.kubeconfig;
  // The Kubernetes source registers its own per-kind watch metrics on the same registry.
  const metrics = createControllerMetrics({ defaults: true, sourceMetrics: kubeconfig === undefined });
  const controller = await Controller.create({
    listen: flags.listen,
    pushPort: flags.pushPort,
    metricsPort: flags.metricsPort,
    trustDomain: flags.trustDomain,
    debounceMs: flags.debounceMs,
    authenticator,
    ca,
    log,
    metrics,
    sources: (sink) => kubeconfig !== undefined
      ? [new KubernetesSource({
          kubeConfig: loadKubeConfig(kubeconfig === 'default' || kubeconfig === 'in-cluster' ? undefined : kubeconfig),
          sink, log, registry: metrics.registry,
        })]
      : [new FileSource({
          dir: flags.files ?? '', sink, log: log.child('files'),
          onWatchRestart: () => metrics.watchRestarts?.inc({ kind: 'files' }),
        })],
  });
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info('shutting down', { signal });
    void controller.close();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  await controller.run();
}

main().catch((e: unknown) => {
  const code = e instanceof RondoError ? e.code : 'RONDO_E_FATAL';
  process.stderr.write(JSON.stringify({ time: new Date().toISOString(), level: 'error', component: 'controller', msg: 'controller failed to start', code, error: errorMessage(e) }) + '\n');
  process.exit(1);
});
