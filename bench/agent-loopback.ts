/**
 * `node [--cpu-prof] bench/agent-loopback.ts [--conns 1000] [--rr 20000] [--c 16] [--new-conns 3000] [--bulk-mb 1000]`: two node
 * agents' data paths (DataPlane) in this process on loopback addresses, pod A -> HBONE -> pod B,
 * no lab and no root needed. Prints the memory each held connection costs (after a full GC,
 * so live objects only) and the CPU per request of a ping-pong load, for quick iteration on
 * the hot path (docs/performance.md). Needs `--expose-gc` for the memory figure.
 */
import net from 'node:net';
import { parseArgs } from 'node:util';
import { setDefaultHighWaterMark } from 'node:stream';
import { createLogger } from '../common/log.ts';
import type { ProxyConfig } from '../common/proxy-config.ts';
import { AgentState } from '../node-agent/state.ts';
import { AgentMetrics } from '../node-agent/metrics.ts';
import { DataPlane } from '../node-agent/dataplane.ts';
import type { DataPlaneCert } from '../node-agent/dataplane.ts';
import { createTestPki, dataPlaneCert, demoWorkload } from '../test/common/hbone-fixtures.ts';
import { PORTS } from '../common/ports.ts';

const A_IP = '127.0.11.1', B_IP = '127.0.12.1';
const { values } = parseArgs({ options: { conns: { type: 'string' }, rr: { type: 'string' }, c: { type: 'string' }, size: { type: 'string' }, 'new-conns': { type: 'string' }, 'bulk-mb': { type: 'string' } } });
const BULK_MB = Number(values['bulk-mb'] ?? 1000);
const NEW_CONNS = Number(values['new-conns'] ?? 3000);
const CONNS = Number(values.conns ?? 1000), RR = Number(values.rr ?? 20000), C = Number(values.c ?? 16), SIZE = Number(values.size ?? 1024);
const MB = 1024 * 1024;
if (process.env['HWM'] !== undefined) setDefaultHighWaterMark(false, Number(process.env['HWM']));
const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined);

const log = createLogger('loopback', { write: () => true });
const pki = createTestPki();
const cert = (sa: string): DataPlaneCert => dataPlaneCert(pki, sa);
const certA = cert('a'), certB = cert('b');
const wl = demoWorkload;
const config: ProxyConfig = {
  version: 1,
  mesh: { trustDomain: 'cluster.local', trustBundle: [pki.caPem], rootNamespace: 'rondo-system' },
  workloads: new Map([['uid-a', wl('a', A_IP, 'node-1', certA.identity)], ['uid-b', wl('b', B_IP, 'node-2', certB.identity)]]),
  services: new Map(), authorizationPolicies: new Map(), peerAuthentications: new Map(), l7: new Map(),
};

// Pod B: answers every SIZE-byte message with SIZE bytes (a request/response ping-pong).
const reply = Buffer.alloc(SIZE, 'r');
const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => {
  s.on('error', () => undefined);
  let got = 0;
  // A connection that starts with 'B' is a bulk upload: count and discard, answer 'done' at the end.
  s.once('data', (first: Buffer) => {
    if (first[0] !== 0x42) return;
    s.removeAllListeners('data');
    let n = first.length;
    s.on('data', (d: Buffer) => { n += d.length; });
    s.on('end', () => s.end(`done ${n}`));
  });
  s.on('data', (d) => { got += d.length; while (got >= SIZE) { got -= SIZE; s.write(reply); } });
  s.on('end', () => s.end());
});
await new Promise<void>((r) => server.listen(0, B_IP, r));
const bPort = (server.address() as net.AddressInfo).port;
const dp1 = await DataPlane.create({ log, metrics: new AgentMetrics(), host: '127.0.11.254', ports: { outbound: 0, inbound: 0, hbone: 0 }, originalDestination: () => ({ ip: B_IP, port: bPort }) });
const dp2 = await DataPlane.create({ log, metrics: new AgentMetrics(), host: B_IP, ports: { outbound: 0, inbound: 0, hbone: PORTS.hbone } });
dp1.setState(AgentState.build(config, 'node-1')); dp1.setCerts([certA]);
dp2.setState(AgentState.build(config, 'node-2')); dp2.setCerts([certB]);

const outPort = dp1.ports.outbound;
function open(): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.11.254', port: outPort, localAddress: A_IP, noDelay: true });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}
const mem = (): NodeJS.MemoryUsage => { gc(); gc(); return process.memoryUsage(); };
const fmt = (n: number): string => (n / MB).toFixed(1);

// Warm up (session established), then hold CONNS idle connections.
const warm = await open(); warm.write(Buffer.alloc(SIZE)); await new Promise((r) => warm.once('data', r)); warm.destroy();
await new Promise((r) => setTimeout(r, 200));
const m0 = mem();
const held: net.Socket[] = [];
for (let i = 0; i < CONNS; i += 50) held.push(...await Promise.all(Array.from({ length: Math.min(50, CONNS - i) }, open)));
await new Promise((r) => setTimeout(r, 500));
const m1 = mem();
const per = (k: keyof NodeJS.MemoryUsage): string => (((m1[k] - m0[k]) / CONNS) / 1024).toFixed(1);
process.stdout.write(`held ${CONNS}: rss ${fmt(m0.rss)} -> ${fmt(m1.rss)} MB; per connection (both agents) rss ${per('rss')} KB, heap ${per('heapUsed')} KB, external ${per('external')} KB\n`);
for (const s of held) s.destroy();
await new Promise((r) => setTimeout(r, 500));

// Ping-pong over C keep-alive connections, RR requests in all.
const conns = await Promise.all(Array.from({ length: C }, open));
const msg = Buffer.alloc(SIZE, 'q');
let left = RR;
const cpu0 = process.cpuUsage(); const t0 = performance.now();
// Round-trip times (both agents' added latency plus client and server), for the c=1 figure.
const rtts: number[] = [];
await Promise.all(conns.map((s) => new Promise<void>((resolve) => {
  let got = 0;
  let sentAt = 0;
  const next = (): void => {
    if (sentAt > 0) rtts.push(performance.now() - sentAt);
    if (left-- > 0) { sentAt = performance.now(); s.write(msg); } else resolve();
  };
  s.on('data', (d) => { got += d.length; while (got >= SIZE) { got -= SIZE; next(); } });
  next();
})));
const dt = performance.now() - t0; const cpu = process.cpuUsage(cpu0);
rtts.sort((x, y) => x - y);
const p50 = rtts[Math.floor(rtts.length / 2)] ?? 0;
process.stdout.write(`ping-pong c=${C} size=${SIZE}: ${(RR / (dt / 1000)).toFixed(0)} req/s, p50 round trip ${(p50 * 1000).toFixed(0)} µs, process CPU ${((cpu.user + cpu.system) / RR).toFixed(1)} µs/request (both agents + client + server)\n`);
for (const s of conns) s.destroy();

// New connections: connect, one request/response, client closes; C at a time.
let todo = NEW_CONNS;
const cpu1 = process.cpuUsage(); const t1 = performance.now();
await Promise.all(Array.from({ length: C }, async () => {
  while (todo-- > 0) {
    const s = await open();
    await new Promise<void>((resolve) => {
      let got = 0;
      s.on('data', (d) => { got += d.length; if (got >= SIZE) s.end(); });
      s.on('close', () => resolve());
      s.write(msg);
    });
  }
}));
const dt1 = performance.now() - t1; const cpuN = process.cpuUsage(cpu1);
process.stdout.write(`new connections c=${C}: ${(NEW_CONNS / (dt1 / 1000)).toFixed(0)} conn/s, process CPU ${((cpuN.user + cpuN.system) / NEW_CONNS).toFixed(1)} µs/connection (both agents + client + server)\n`);
// Bulk: one connection uploads BULK_MB MiB through both agents (iperf3-like, with backpressure).
{
  const s = await open();
  const chunk = Buffer.alloc(128 * 1024, 'B');
  let left = BULK_MB * 8;
  const cpu2 = process.cpuUsage(); const t2 = performance.now();
  await new Promise<void>((resolve) => {
    s.on('data', () => undefined);
    s.on('end', () => resolve());
    const pumpOut = (): void => {
      while (left > 0) { left--; if (!s.write(chunk)) { s.once('drain', pumpOut); return; } }
      s.end();
    };
    pumpOut();
  });
  const dt2 = performance.now() - t2; const cpuB = process.cpuUsage(cpu2);
  const gb = (BULK_MB * MB) / 1e9;
  process.stdout.write(`bulk ${BULK_MB} MiB: ${((gb * 8) / (dt2 / 1000)).toFixed(2)} Gbit/s, process CPU ${((cpuB.user + cpuB.system) / 1e6 / gb).toFixed(2)} s/GB (both agents + client + server)\n`);
  s.destroy();
}
await dp1.close(0); await dp2.close(0); server.close(); pki.cleanup();
