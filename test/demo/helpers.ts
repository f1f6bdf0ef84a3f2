/** Shared helpers for the demo app's tests: servers on 127.0.0.1:0 torn down with the test. */
import http from 'node:http';
import http2 from 'node:http2';
import { execFile } from 'node:child_process';
import { createLogger } from '../../common/log.ts';
import type { Logger } from '../../common/log.ts';
import { EchoServer } from '../../lab/demo/echo-server.ts';
import type { EchoServerOptions } from '../../lab/demo/echo-server.ts';

/** A logger that keeps its lines for assertions instead of printing them. */
export function memLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return Object.assign(createLogger('demo', { write: (l: string) => lines.push(l) }, 'debug'), { lines });
}

export const ID = { pod: 'backend-v1-0', namespace: 'demo', app: 'backend', version: 'v1', node: 'node-1' } as const;

interface Teardown { teardown(fn: () => unknown): void }

/** Starts an echo server on 127.0.0.1:0, closed at teardown. */
export async function startEcho(t: Teardown, o: Partial<EchoServerOptions> = {}): Promise<EchoServer> {
  const s = await EchoServer.create({ port: 0, host: '127.0.0.1', identity: ID, log: memLogger(), ...o });
  t.teardown(() => s.close(100));
  return s;
}

/** A plain HTTP/1.1 request without keep-alive pooling surprises. */
export function h1(port: number, path: string, o: { method?: string; headers?: http.OutgoingHttpHeaders; body?: string; agent?: http.Agent } = {}):
  Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: o.method ?? 'GET', headers: o.headers ?? {}, agent: o.agent ?? false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end(o.body);
  });
}

/** One HTTP/2 prior-knowledge request on a fresh session. */
export function h2(port: number, path: string, headers: http2.OutgoingHttpHeaders = {}):
  Promise<{ headers: http2.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const st = session.request({ ':path': path, ...headers });
    let rh: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    st.on('response', (h) => { rh = h; });
    st.on('data', (c: Buffer) => chunks.push(c));
    st.on('end', () => { session.close(); resolve({ headers: rh, body: Buffer.concat(chunks) }); });
    st.on('error', reject);
  });
}

/** Runs curl and resolves with stdout (rejects on a non-zero exit). */
export function curl(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('curl', ['-sS', '--max-time', '10', ...args], (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`curl ${args.join(' ')}: ${err.message} ${stderr}`));
      else resolve(stdout);
    });
  });
}
