/** The controller's plain-HTTP endpoint (:15014): /metrics, /healthz/ready, /debug/* (proxies, invalid resources with their reasons, version). */
import http from 'node:http';
import type { Registry } from 'prom-client';
import type { Logger } from '../common/log.ts';
import { RondoError, errorMessage } from '../common/errors.ts';

/** What the HTTP endpoint reads from the controller. */
export interface HttpDeps {
  registry: Registry;
  ready: () => boolean;
  debug: Record<string, () => unknown>;
  log: Logger;
}

/** A bound HTTP server; close() is idempotent. */
export interface HttpEndpoint {
  readonly port: number;
  close(): Promise<void>;
}

/** Binds the endpoint; fails loudly if the port is taken. */
export async function createHttpEndpoint(host: string, port: number, deps: HttpDeps): Promise<HttpEndpoint> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const send = (code: number, type: string, body: string): void => {
      res.writeHead(code, { 'content-type': type }).end(body);
    };
    if (path === '/metrics') {
      deps.registry.metrics().then(
        (m) => send(200, deps.registry.contentType, m),
        (e: unknown) => send(500, 'text/plain', `metrics failed: ${errorMessage(e)}\n`),
      );
      return;
    }
    if (path === '/healthz/ready') {
      return deps.ready() ? send(200, 'text/plain', 'ok\n') : send(503, 'text/plain', 'not ready: initial sync or first push pending\n');
    }
    const d = path.startsWith('/debug/') ? deps.debug[path.slice('/debug/'.length)] : undefined;
    if (d !== undefined) return send(200, 'application/json', JSON.stringify(d(), null, 2) + '\n');
    send(404, 'text/plain', `not found; try /metrics, /healthz/ready, ${Object.keys(deps.debug).map((k) => `/debug/${k}`).join(', ')}\n`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new RondoError('RONDO_E_LISTEN', `cannot listen on ${host}:${port} for metrics/health: ${errorMessage(e)}`)));
    server.listen(port, host, () => resolve());
  });
  const addr = server.address();
  let closing: Promise<void> | undefined;
  return {
    port: addr !== null && typeof addr === 'object' ? addr.port : port,
    close: () => (closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    })),
  };
}
