// A waypoint against a real controller process on 127.0.0.1, with backend pods as HTTP
// servers on loopback addresses (not enrolled: the waypoint reaches them over plain TCP) and
// the test acting as a source node agent: an HBONE client with a certificate from the mesh CA.
import http from 'node:http';
import http2 from 'node:http2';
import tls from 'node:tls';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { freePort, poll } from '../helpers/net.ts';
import { createLogger } from '../../common/log.ts';

export { freePort, poll };
import { HboneClientPool } from '../../common/hbone.ts';
import { generateKeyAndCsr } from '../../common/pki.ts';
import { Waypoint } from '../../waypoint/waypoint.ts';
import type { RequestRecord } from '../../waypoint/proxy.ts';
import { CertificateAuthority } from '../../controller/ca.ts';

export const log = createLogger('test', { write: () => true });



/** Waits until `check` holds (polling a condition the test cannot await directly). */
export async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** An echo backend: answers with its name, the request line and headers as JSON. */
export function echoServer(name: string, ip: string, port: number, handler?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean): Promise<http.Server> {
  const s = http.createServer((req, res) => {
    if (handler?.(req, res) === true) return;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.stringify({ pod: name, method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() });
      res.writeHead(200, { 'content-type': 'application/json', 'x-pod': name });
      res.end(body);
    });
  });
  return new Promise((resolve) => s.listen(port, ip, () => resolve(s)));
}

/** An h2c echo backend (prior knowledge), answering gRPC-style with trailers when asked. */
export function h2Server(name: string, ip: string, port: number): Promise<http2.Http2Server> {
  const s = http2.createServer();
  s.on('stream', (stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      const grpc = String(headers['content-type'] ?? '').startsWith('application/grpc');
      stream.respond({ ':status': 200, 'content-type': grpc ? 'application/grpc' : 'application/json', 'x-pod': name }, { waitForTrailers: grpc });
      if (grpc) stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': String(headers['x-want-status'] ?? '0'), 'grpc-message': 'from-' + name }));
      stream.end(JSON.stringify({ pod: name, path: headers[':path'], authority: headers[':authority'], body: Buffer.concat(chunks).toString() }));
    });
  });
  return new Promise((resolve) => s.listen(port, ip, () => resolve(s)));
}

export interface Harness {
  waypoint: Waypoint;
  dir: string;
  stateDir: string;
  records: RequestRecord[];
  metricsUrl: string;
  /** A tunnel through the waypoint to `authority` (a VIP:port), as a source agent opens it. */
  tunnel(authority: string, as?: string): Promise<Duplex>;
  /** One HTTP/1.1 request over a fresh tunnel. */
  request(authority: string, o?: { method?: string; path?: string; headers?: http.OutgoingHttpHeaders; body?: string; as?: string }): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>;
  /** An HTTP/2 (prior knowledge) session over a fresh tunnel. */
  h2(authority: string, as?: string): Promise<http2.ClientHttp2Session>;
  close(): Promise<void>;
}

/** Starts a controller on `files` (name -> YAML) and a waypoint demo/wp against it. */
export async function startHarness(files: Record<string, string>, o: { random?: () => number } = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'rondo-wp-'));
  const stateDir = join(dir, 'state');
  mkdirSync(stateDir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(stateDir, name), text);
  writeFileSync(join(dir, 'tokens.json'), JSON.stringify({ 'waypoint-token-0123456789': { kind: 'waypoint', namespace: 'demo', name: 'wp' } }));
  writeFileSync(join(dir, 'token'), 'waypoint-token-0123456789\n');
  const [push, cmetrics] = await Promise.all([freePort(), freePort()]);
  const ctl = spawn(process.execPath, [join(import.meta.dirname, '../../controller/main.ts'), '--files', stateDir, '--listen', '127.0.0.1',
    '--ca-dir', join(dir, 'ca'), '--tokens', join(dir, 'tokens.json'), '--push-port', String(push), '--metrics-port', String(cmetrics), '--debounce-ms', '10'],
  { stdio: ['ignore', 'ignore', 'inherit'] });
  const cleanup = (): void => { ctl.kill('SIGKILL'); rmSync(dir, { recursive: true, force: true }); };
  try {
    if (await poll(`http://127.0.0.1:${cmetrics}/healthz/ready`, 200) !== 200) throw new Error('controller not ready');
    const records: RequestRecord[] = [];
    const accessLog = Object.assign((r: RequestRecord) => { records.push(r); }, { flush: () => undefined });
    const waypoint = await Waypoint.create({
      namespace: 'demo', name: 'wp', controller: `127.0.0.1:${push}`, tokenFile: join(dir, 'token'), caFile: join(dir, 'ca', 'root-cert.pem'), log,
      host: '127.0.0.1', hbonePort: 0, adminPort: 0, metricsPort: 0, accessLog, ...(o.random !== undefined ? { random: o.random } : {}),
    });
    void waypoint.run();
    const metricsUrl = `http://127.0.0.1:${waypoint.ports.metrics}/metrics`;
    if (await poll(`http://127.0.0.1:${waypoint.ports.metrics}/healthz/ready`, 200) !== 200) throw new Error('waypoint not ready');
    const rootPem = readFileSync(join(dir, 'ca', 'root-cert.pem'), 'utf8');
    const ca = await CertificateAuthority.loadOrCreate({ dir: join(dir, 'ca'), trustDomain: 'cluster.local', ttlSeconds: 3600 });
    const contexts = new Map<string, tls.SecureContext>();
    const ctxFor = async (id: string): Promise<tls.SecureContext> => {
      let c = contexts.get(id);
      if (c === undefined) {
        const { keyPem, csrPem } = await generateKeyAndCsr(id);
        const chain = await ca.signCsr(csrPem, id);
        c = tls.createSecureContext({ key: keyPem, cert: chain.join('\n'), ca: rootPem, minVersion: 'TLSv1.3' });
        contexts.set(id, c);
      }
      return c;
    };
    const pool = new HboneClientPool({ log });
    const DEFAULT_CALLER = 'spiffe://cluster.local/ns/client/sa/client';
    const tunnel = async (authority: string, as = DEFAULT_CALLER): Promise<Duplex> => pool.connect({
      connectTo: { ip: '127.0.0.1', port: waypoint.ports.hbone }, authority, expectedIdentity: 'spiffe://cluster.local/ns/demo/sa/wp',
      sourceIdentity: as, secureContext: await ctxFor(as),
    });
    const request: Harness['request'] = async (authority, r = {}) => {
      const stream = await tunnel(authority, r.as);
      return new Promise((resolve, reject) => {
        const req = http.request({ createConnection: () => stream, method: r.method ?? 'GET', path: r.path ?? '/', headers: { host: authority, ...r.headers } }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }); stream.destroy(); });
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end(r.body);
      });
    };
    const h2 = async (authority: string, as?: string): Promise<http2.ClientHttp2Session> => {
      const stream = await tunnel(authority, as);
      const s = http2.connect(`http://${authority}`, { createConnection: () => stream });
      s.on('error', () => undefined);
      return s;
    };
    return {
      waypoint, dir, stateDir, records, metricsUrl, tunnel, request, h2,
      close: async () => { await pool.close(0); await waypoint.close(0); cleanup(); },
    };
  } catch (e) {
    cleanup();
    throw e;
  }
}
