/**
 * Control-plane benchmark (not a test): 10,000 pods / 1,000 services / 100 connected node
 * agents on loopback. Reports cold and incremental build time, the time from one pod change
 * to every proxy's ACK (median, p99; debounce excluded, it is configuration), snapshot size
 * and the controller's memory. The proxies run in a child process, so the controller's
 * figures are its own.
 *
 *   node bench/control-plane.ts [--pods 10000] [--services 1000] [--proxies 100] [--changes 50] [--text-frames]
 */
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { Controller } from '../controller/controller.ts';
import { CertificateAuthority } from '../controller/ca.ts';
import { TokenFileAuthenticator } from '../controller/push/auth.ts';
import { ModelBuilder } from '../controller/model/build.ts';
import { ObjectStore } from '../controller/store.ts';
import { createLogger } from '../common/log.ts';
import type { KubeObject, ResourceSink } from '../controller/sources/types.ts';
import { FRAME_ENCODING, FRAME_ENCODING_HEADER, frameText } from '../common/wire.ts';
import type { ProxyIdentity } from '../common/wire.ts';

const { values } = parseArgs({
  options: {
    pods: { type: 'string', default: '10000' }, services: { type: 'string', default: '1000' },
    proxies: { type: 'string', default: '100' }, changes: { type: 'string', default: '50' },
    child: { type: 'string' }, ca: { type: 'string' },
    /** Proxies announce no frame encoding: the controller sends text frames (before the change). */
    'text-frames': { type: 'boolean', default: false },
  },
});

const token = (i: number): string => `bench-node-${i}-token-000000`;

if (values.child !== undefined) {
  // Proxy side: N raw WebSocket node agents that parse every message and ACK it.
  const [url, n] = [values.child, Number(values.proxies)];
  const { readFileSync } = await import('node:fs');
  const ca = readFileSync(values.ca ?? '', 'utf8');
  let ready = 0;
  for (let i = 0; i < n; i++) {
    const headers: Record<string, string> = { authorization: `Bearer ${token(i)}` };
    if (values['text-frames'] !== true) headers[FRAME_ENCODING_HEADER] = FRAME_ENCODING;
    const ws = new WebSocket(url, { ca: [ca], headers, maxPayload: 256 * 1024 * 1024 });
    ws.on('open', () => ws.send(JSON.stringify({ type: 'hello', proxy: { kind: 'node-agent', node: `node-${i}` } })));
    ws.on('message', (d, isBinary) => {
      const m = JSON.parse(frameText(d as Buffer, isBinary)) as { type: string; version: number; nonce: string };
      ws.send(JSON.stringify({ type: 'ack', version: m.version, nonce: m.nonce }));
      if (m.type === 'snapshot' && ++ready === n) process.send?.('ready');
    });
    ws.on('error', (e) => { process.stderr.write(`proxy ${i}: ${e.message}\n`); });
  }
} else {
  await main();
}

function generate(pods: number, services: number): KubeObject[] {
  const objs: KubeObject[] = [];
  const nsCount = 50;
  for (let n = 0; n < nsCount; n++) objs.push({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: `ns-${n}`, labels: { 'rondo.dev/dataplane-mode': 'ambient' } } });
  const perSvc = Math.max(1, Math.floor(pods / services));
  for (let s = 0; s < services; s++) {
    const ns = `ns-${s % nsCount}`;
    const eps: unknown[] = [];
    for (let k = 0; k < perSvc; k++) {
      const p = s * perSvc + k;
      if (p >= pods) break;
      const ip = `10.${100 + (p >> 16)}.${(p >> 8) & 255}.${p & 255}`;
      objs.push(podObj(ns, `svc-${s}-${k}`, ip, `node-${p % 100}`, `sa-${s}`));
      eps.push({ addresses: [ip], conditions: { ready: true }, targetRef: { kind: 'Pod', uid: `uid-${ns}-svc-${s}-${k}` } });
    }
    objs.push({ apiVersion: 'v1', kind: 'Service', metadata: { name: `svc-${s}`, namespace: ns }, spec: { clusterIP: `10.96.${s >> 8}.${s & 255}`, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } });
    objs.push({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: `svc-${s}-x`, namespace: ns, labels: { 'kubernetes.io/service-name': `svc-${s}` } }, endpoints: eps, ports: [{ name: 'http', port: 8080 }] });
  }
  return objs;
}

function podObj(ns: string, name: string, ip: string, node: string, sa: string): KubeObject {
  return {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name, namespace: ns, uid: `uid-${ns}-${name}`, labels: { app: name.replace(/-\d+$/, ''), version: 'v1' } },
    spec: { nodeName: node, serviceAccountName: sa }, status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
  };
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}

async function main(): Promise<void> {
  const pods = Number(values.pods), services = Number(values.services), proxies = Number(values.proxies), changes = Number(values.changes);
  const objs = generate(pods, services);
  const mb = (n: number): string => `${(n / 1024 / 1024).toFixed(0)} MiB`;

  // Build time, cold and after one pod change.
  const store = new ObjectStore();
  for (const o of objs) store.upsert(o);
  const b = new ModelBuilder({ trustDomain: 'cluster.local', trustBundle: ['x'] });
  let t0 = performance.now();
  const snap = b.build(store);
  const cold = performance.now() - t0;
  const incrs: number[] = [];
  for (let i = 0; i < 21; i++) {
    store.upsert(podObj('ns-0', 'svc-0-0', `10.200.0.${i + 1}`, 'node-0', 'sa-0'));
    t0 = performance.now();
    b.build(store);
    incrs.push(performance.now() - t0);
  }
  t0 = performance.now();
  new ModelBuilder({ trustDomain: 'cluster.local', trustBundle: ['x'] }).build(store);
  const cold2 = performance.now() - t0;

  const rssBeforeController = process.memoryUsage().rss;
  // Full controller with N proxies in a child process.
  const dir = mkdtempSync(join(tmpdir(), 'rondo-bench-'));
  const ca = await CertificateAuthority.loadOrCreate({ dir, trustDomain: 'cluster.local', ttlSeconds: 3600 });
  const tokens: Record<string, ProxyIdentity> = {};
  for (let i = 0; i < proxies; i++) tokens[token(i)] = { kind: 'node-agent', node: `node-${i}` };
  let sink: ResourceSink | undefined;
  const ctl = await Controller.create({
    listen: '127.0.0.1', pushPort: 0, metricsPort: 0, trustDomain: 'cluster.local', debounceMs: 0,
    authenticator: new TokenFileAuthenticator(tokens), ca, log: createLogger('bench', { write: () => true }, 'error'),
    sources: (s) => {
      sink = s;
      return [{ start: () => { for (const o of objs) s.upsert(o); return Promise.resolve(); }, close: () => Promise.resolve() }];
    },
  });
  const snapBytes = JSON.stringify({ w: [...snap.resources.workloads.values()], s: [...snap.resources.services.values()] }).length;
  const child = fork(new URL(import.meta.url).pathname, ['--child', `wss://127.0.0.1:${ctl.ports.push}/rondo/v1/push`, '--proxies', String(proxies), '--ca', join(dir, 'root-cert.pem'),
    ...(values['text-frames'] === true ? ['--text-frames'] : [])], { stdio: 'inherit' });
  t0 = performance.now();
  await new Promise<void>((resolve) => child.once('message', () => resolve()));
  const initialPush = performance.now() - t0;
  const rssAfterSnapshots = process.memoryUsage().rss;

  const lat: number[] = [];
  // Wait for a version's ACKs from every proxy, polling the server's own bookkeeping.
  const allAcked = async (v: number): Promise<void> => {
    for (;;) {
      const rows = ctl.proxies();
      if (rows.length === proxies && rows.every((r) => r.ackedVersion === v)) return;
      await new Promise((r) => setImmediate(r));
    }
  };
  for (let i = 0; i < changes; i++) {
    const start = performance.now();
    sink?.upsert(podObj('ns-1', 'svc-1-0', `10.201.${i >> 8}.${i & 255}`, 'node-1', 'sa-1'));
    ctl.flush();
    await allAcked(ctl.version);
    lat.push(performance.now() - start);
  }
  global.gc?.();
  const mem = process.memoryUsage();
  child.kill();
  // Per-connection native buffers (TLS) go with their sockets: RSS once every proxy is gone.
  for (let i = 0; i < 500 && ctl.proxies().length > 0; i++) await new Promise((r) => setTimeout(r, 10));
  global.gc?.();
  const rssDisconnected = process.memoryUsage().rss;
  await ctl.close();
  rmSync(dir, { recursive: true, force: true });

  const lines = [
    `control-plane bench: ${pods} pods, ${services} services, ${proxies} node agents (loopback, ${process.version})`,
    `  model build, cold:                 ${cold.toFixed(1)} ms (second cold run ${cold2.toFixed(1)} ms)`,
    `  model build, after one pod change: median ${pct(incrs, 50).toFixed(1)} ms, max ${pct(incrs, 100).toFixed(1)} ms (n=${incrs.length})`,
    `  node-agent view (JSON):            ${(snapBytes / 1024 / 1024).toFixed(1)} MB`,
    `  initial snapshot to all proxies:   ${initialPush.toFixed(0)} ms (${values['text-frames'] === true ? 'text frames' : 'shared deflated binary frames'}; rss then ${mb(rssAfterSnapshots)}, before the controller started ${mb(rssBeforeController)})`,
    `  one pod change -> all ${proxies} ACKs: median ${pct(lat, 50).toFixed(1)} ms, p99 ${pct(lat, 99).toFixed(1)} ms (n=${lat.length}, debounce excluded)`,
    `  controller memory after the run:   rss ${mb(mem.rss)}, heap used ${mb(mem.heapUsed)} of ${mb(mem.heapTotal)}, external ${mb(mem.external)}, array buffers ${mb(mem.arrayBuffers)}; peak rss ${mb(process.resourceUsage().maxRSS * 1024)}; rss once all proxies disconnected ${mb(rssDisconnected)}`,
    `  machine load average at the end:   ${loadavg().map((x) => x.toFixed(1)).join(' ')} (shared 2-core box: absolute ms drift with it)`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

