/**
 * The proxies' small HTTP servers (node agent and waypoint alike): 15020 (`/metrics`,
 * `/healthz/ready`, on all addresses, for Prometheus and the kubelet) and 15000 (admin,
 * 127.0.0.1 only: `/config_dump`, `/certs`, `/connections`). Each is a fixed table of GET
 * routes; the proxy supplies the table.
 */
import http from 'node:http';
import { RondoError, errorMessage } from './errors.ts';
import type { Logger } from './log.ts';

/** A route: returns status, content type and body. */
export type Route = () => Promise<{ status: number; type?: string; body: string }>;

/** Binds an HTTP server serving GET routes; fails loudly when the port is taken. */
export async function serveRoutes(o: { host: string; port: number; routes: Record<string, Route>; log: Logger; what: string }): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const route = o.routes[path];
    if (req.method !== 'GET' || route === undefined) {
      res.writeHead(req.method !== 'GET' ? 405 : 404, { 'content-type': 'text/plain' });
      res.end(`${req.method !== 'GET' ? 'only GET' : 'not found'}; routes: ${Object.keys(o.routes).join(' ')}\n`);
      return;
    }
    route().then((r) => {
      res.writeHead(r.status, { 'content-type': r.type ?? 'application/json' });
      res.end(r.body);
    }, (e: unknown) => {
      o.log.warn(`${o.what} route failed`, { path, error: e });
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`${errorMessage(e)}\n`);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new RondoError('RONDO_E_LISTEN', `cannot listen for ${o.what} on ${o.host}:${o.port}: ${errorMessage(e)} (is another proxy already running in this network namespace?)`, { cause: e })));
    server.listen(o.port, o.host, resolve);
  });
  server.on('error', (e) => o.log.error(`${o.what} server error`, { error: e }));
  return server;
}

/** A JSON route result. */
export function json(body: unknown, status = 200): { status: number; type: string; body: string } {
  return { status, type: 'application/json', body: JSON.stringify(body, mapReplacer, 2) + '\n' };
}

// ProxyConfig holds Maps; dump them as objects keyed like the wire format.
function mapReplacer(_k: string, v: unknown): unknown {
  return v instanceof Map ? Object.fromEntries(v) : v;
}
