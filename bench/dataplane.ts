/**
 * One data-plane measurement run inside a client pod's netns: wrk for requests (keep-alive
 * c=1, c=16, and connection-per-request), iperf3 for bulk throughput, and a small Node
 * script that holds many idle connections open while the caller reads proxy memory.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RondoError } from '../common/errors.ts';
import { parseIperf3, parseWrk } from './parse.ts';
import type { LoadResult } from './parse.ts';

/** Runs argv in a pod's netns and returns its output (the lab's `exec`). */
export type PodExec = (pod: string, argv: string[], o: { timeoutMs: number; allowFail: boolean }) => Promise<{ code: number; stdout: string; stderr: string }>;

const WRK_LUA = join(fileURLToPath(new URL('.', import.meta.url)), 'wrk-json.lua');

/** The load shapes measured per path. */
export const LOADS = {
  c1: { connections: 1, threads: 1, close: false },
  c16: { connections: 16, threads: 2, close: false },
  conn: { connections: 16, threads: 2, close: true },
} as const;
/** Name of a load shape. */
export type LoadName = keyof typeof LOADS;

/** Pure: the wrk command line for a load shape against `url`. */
export function wrkArgv(load: LoadName, url: string, seconds: number): string[] {
  const l = LOADS[load];
  return ['wrk', `-t${l.threads}`, `-c${l.connections}`, `-d${seconds}s`, '--timeout', '5s', '-s', WRK_LUA, ...(l.close ? ['-H', 'Connection: close'] : []), url];
}

/** Runs wrk in the client pod; fails when wrk fails or not one request succeeded. */
export async function runWrk(exec: PodExec, client: string, load: LoadName, url: string, seconds: number): Promise<LoadResult> {
  const r = await exec(client, wrkArgv(load, url, seconds), { timeoutMs: (seconds + 20) * 1000, allowFail: true });
  if (r.code !== 0) throw new RondoError('RONDO_E_BENCH_LOAD', `wrk ${load} against ${url} from ${client} exited ${r.code}: ${(r.stderr || r.stdout).trim().slice(0, 300)}`);
  const res = parseWrk(r.stdout);
  if (res.requests === 0) throw new RondoError('RONDO_E_BENCH_LOAD', `wrk ${load} against ${url} from ${client} completed no request (errors: ${res.errors}); is the server up and the path open?`);
  return res;
}

/** Runs an iperf3 client in the client pod; returns Gbit/s received. */
export async function runIperf(exec: PodExec, client: string, ip: string, port: number, seconds: number): Promise<number> {
  const argv = ['iperf3', '-c', ip, '-p', String(port), '-t', String(seconds), '-J', '--connect-timeout', '3000'];
  // iperf3's server serves one test at a time; a busy answer right after a previous test is retried once.
  for (let attempt = 0; ; attempt++) {
    const r = await exec(client, argv, { timeoutMs: (seconds + 20) * 1000, allowFail: true });
    try {
      return parseIperf3(r.stdout).gbps;
    } catch (e) {
      if (attempt >= 1) throw new RondoError('RONDO_E_BENCH_LOAD', `iperf3 to ${ip}:${port} from ${client} failed: ${e instanceof Error ? e.message : String(e)} ${r.stderr.trim().slice(0, 200)}`);
      await new Promise((res) => setTimeout(res, 500));
    }
  }
}

// Opens n connections (50 in flight), prints HELD <ok>, keeps them until stdin closes.
const HOLD_SCRIPT = `
const net = require('node:net');
const [ip, port, n] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const socks = []; let ok = 0, next = 0, done = 0;
const one = () => { if (next >= n) return; next++;
  const s = net.connect({ host: ip, port });
  let answered = false;
  s.on('connect', () => s.write('GET /bytes/16 HTTP/1.1\\r\\nHost: bench\\r\\n\\r\\n'));
  s.on('data', () => { if (!answered) { answered = true; ok++; finish(); } });
  s.on('error', () => { if (!answered) { answered = true; finish(); } }); socks.push(s); };
const finish = () => { done++; if (done === n) process.stdout.write('HELD ' + ok + '\\n'); else one(); };
for (let i = 0; i < Math.min(50, n); i++) one();
process.stdin.on('data', () => {}); process.stdin.on('end', () => { for (const s of socks) s.destroy(); process.exit(0); });
`;

/**
 * Holds `n` idle keep-alive connections from a pod netns to the demo server at ip:port while
 * `during()` runs; returns how many were answered and its result. Each sends one small
 * request first: the demo server closes connections that say nothing for 10 s (its protocol
 * sniffer), but keeps answered keep-alive connections for 65 s.
 */
export async function holdConnections<T>(netns: string, ip: string, port: number, n: number, during: () => Promise<T>, timeoutMs = 30_000): Promise<{ held: number; result: T }> {
  const child = spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', HOLD_SCRIPT, ip, String(port), String(n)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  try {
    const held = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new RondoError('RONDO_E_BENCH_LOAD', `opening ${n} connections to ${ip}:${port} in ${netns} took over ${timeoutMs / 1000}s`)), timeoutMs);
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /HELD (\d+)/.exec(out);
        if (m !== null) { clearTimeout(timer); resolve(Number(m[1])); }
      });
      child.once('exit', (code) => { clearTimeout(timer); reject(new RondoError('RONDO_E_BENCH_LOAD', `connection holder in ${netns} exited ${code}: ${err.trim().slice(0, 200)}`)); });
    });
    return { held, result: await during() };
  } finally {
    child.stdin.end();
    const exited = child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', r));
    const t = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(t);
  }
}
