/**
 * The controller's plain-HTTP endpoint (:15014): /metrics and /healthz/ready for anyone
 * (Prometheus, the kubelet), /debug/* (proxies, invalid resources with their reasons,
 * version) only for the controller's own host or an operator holding the debug token.
 */
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { createHash, timingSafeEqual } from 'node:crypto';
import { isIPv4 } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from '../common/log.ts';
import { RondoError, errorMessage } from '../common/errors.ts';
import { stripV4Mapped } from '../common/ip.ts';

/** What the HTTP endpoint reads from the controller. */
export interface HttpDeps {
  registry: Registry;
  ready: () => boolean;
  debug: Record<string, () => unknown>;
  log: Logger;
  /** Bearer token that opens /debug/* from other addresses too (--debug-token-file); none: local only. */
  debugToken?: string;
}

/** Who sent a request, as the debug check sees it. */
export interface DebugRequester {
  remoteAddress: string | undefined;
  localAddress: string | undefined;
  authorization: string | undefined;
}

function isLoopback(ip: string): boolean {
  const a = stripV4Mapped(ip);
  return isIPv4(a) ? a.startsWith('127.') : a === '::1';
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/**
 * Whether a request may read /debug/*: from this host (loopback, or from the address it was
 * sent to, i.e. the same network namespace: `kubectl port-forward`, `kubectl exec`, the
 * lab's `L-ctl`), or with `Authorization: Bearer <debugToken>`. The pages name every proxy,
 * node and invalid resource, which no pod needs. The kernel drops packets arriving with a
 * local source address, and a TCP peer must receive our SYN-ACK, so a remote host cannot pass
 * as local. Returns the refusal's reason, or undefined when allowed.
 */
export function debugRefusal(r: DebugRequester, debugToken: string | undefined): string | undefined {
  const remote = r.remoteAddress ?? '';
  if (remote !== '' && (isLoopback(remote) || stripV4Mapped(remote) === stripV4Mapped(r.localAddress ?? ''))) return undefined;
  const how = debugToken !== undefined
    ? 'send the token of --debug-token-file as "Authorization: Bearer <token>", or ask from the controller\'s host (kubectl port-forward)'
    : 'ask from the controller\'s host (kubectl port-forward or exec), or start the controller with --debug-token-file';
  if (debugToken !== undefined && r.authorization !== undefined) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(r.authorization);
    // Digests of equal length, so the comparison time says nothing about the token.
    if (m?.[1] !== undefined && timingSafeEqual(sha256(m[1]), sha256(debugToken))) return undefined;
    return `wrong debug token from ${remote}: ${how}`;
  }
  return `/debug/* is not served to ${remote || 'an unknown address'}: ${how}`;
}

/** Reads --debug-token-file (one token, surrounding whitespace ignored, 16 characters or more). */
export function loadDebugToken(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new RondoError('RONDO_E_CONFIG', `--debug-token-file ${path} cannot be read: ${errorMessage(e)}`, { cause: e });
  }
  const token = text.trim();
  if (token.length < 16 || /\s/.test(token)) {
    throw new RondoError('RONDO_E_CONFIG', `--debug-token-file ${path} must hold one token of 16 or more characters without spaces (got ${token.length} characters)`);
  }
  return token;
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
    if (path.startsWith('/debug/') || path === '/debug') {
      const refused = debugRefusal({ remoteAddress: req.socket.remoteAddress, localAddress: req.socket.localAddress, authorization: req.headers.authorization }, deps.debugToken);
      if (refused !== undefined) {
        deps.log.debug('debug request refused', { path, remote: req.socket.remoteAddress, reason: refused });
        return send(403, 'text/plain', `forbidden: ${refused}\n`);
      }
      const d = deps.debug[path.slice('/debug/'.length)];
      if (d !== undefined) return send(200, 'application/json', JSON.stringify(d(), null, 2) + '\n');
    }
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
