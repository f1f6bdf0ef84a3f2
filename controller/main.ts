/** Entry point of the controller process (see the contract: flags, ports, CA directory). */
import { createLogger } from '../common/log.ts';
import { RondoError, errorMessage } from '../common/errors.ts';
import { installCrashHandlers } from '../common/crash.ts';
import { USAGE, parseControllerFlags } from './flags.ts';
import { CertificateAuthority } from './ca.ts';
import { TokenFileAuthenticator } from './push/auth.ts';
import { FileSource } from './sources/files.ts';
import { Controller } from './controller.ts';
import { createControllerMetrics } from './metrics.ts';
import { loadDebugToken } from './http.ts';
import { KubernetesSource, loadKubeConfig } from './sources/kubernetes.ts';
import { KubernetesStatusWriter, kubernetesPatcher } from './status/status-writer.ts';
import { TokenReviewAuthenticator, firstOf, kubernetesReviewer } from './push/token-review.ts';

async function main(): Promise<void> {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const log = createLogger('controller');
  // Anything that escapes a handler ends the process; the Deployment restarts it and proxies
  // keep serving their last config meanwhile (crash.ts).
  installCrashHandlers({ log });
  const flags = parseControllerFlags(process.argv.slice(2));
  const ca = await CertificateAuthority.loadOrCreate({ dir: flags.caDir, trustDomain: flags.trustDomain, ttlSeconds: flags.certTtlSeconds });
  const tokenFile = await TokenFileAuthenticator.load(flags.tokens);
  const debugToken = flags.debugTokenFile !== undefined ? loadDebugToken(flags.debugTokenFile) : undefined;
  const kubeconfig = flags.kubeconfig;
  // Sources share the controller's registry: one watch-restart counter labelled {source, kind}.
  const metrics = createControllerMetrics({ defaults: true });
  const kc = kubeconfig !== undefined ? loadKubeConfig(kubeconfig === 'default' || kubeconfig === 'in-cluster' ? undefined : kubeconfig) : undefined;
  if (kc === undefined) metrics.watchRestarts.inc({ source: 'files', kind: '*' }, 0);
  const ref: { ctl?: Controller } = {};
  // In Kubernetes: bootstrap tokens from the file first, else the proxy's projected
  // ServiceAccount token (audience rondo) through a TokenReview.
  const authenticator = kc === undefined ? tokenFile : firstOf(tokenFile, new TokenReviewAuthenticator({
    review: kubernetesReviewer(kc),
    isWaypoint: (ns, name) => (ref.ctl?.store.get('Gateway', ns, name)?.spec as { gatewayClassName?: unknown } | undefined)?.gatewayClassName === 'rondo-waypoint',
  }));
  const controller = await Controller.create({
    listen: flags.listen,
    pushPort: flags.pushPort,
    metricsPort: flags.metricsPort,
    trustDomain: flags.trustDomain,
    debounceMs: flags.debounceMs,
    ...(flags.debugUncheckedTrustBundleFile !== undefined ? { debugUncheckedTrustBundleFile: flags.debugUncheckedTrustBundleFile } : {}),
    ...(debugToken !== undefined ? { debugToken } : {}),
    authenticator,
    ca,
    log,
    metrics,
    // The file source has nowhere to write status (the lab owns its files): /debug/invalid.
    ...(kc !== undefined ? {
      status: new KubernetesStatusWriter({
        patch: kubernetesPatcher(kc), log: log.child('status'),
        onWrite: (_p, ok) => metrics.statusWrites.inc({ result: ok ? 'ok' : 'error' }),
      }),
    } : {}),
    sources: (sink) => kc !== undefined
      ? [new KubernetesSource({ kubeConfig: kc, sink, log, registry: metrics.registry })]
      : [new FileSource({
          dir: flags.files ?? '', sink, log: log.child('files'),
          onWatchRestart: () => metrics.watchRestarts.inc({ source: 'files', kind: '*' }),
        })],
  });
  ref.ctl = controller;
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
