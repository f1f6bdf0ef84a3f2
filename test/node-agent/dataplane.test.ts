// Two node agents' data paths on loopback addresses (no iptables: the original destination is
// injected): pod A (127.0.1.1, node-1) -> HBONE -> pod B (127.0.2.1, node-2).
import t from 'tap';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { createLogger } from '../../common/log.ts';
import type { ProxyConfig } from '../../common/proxy-config.ts';
import type { AuthorizationPolicy, PeerAuthentication, Workload } from '../../common/wire.ts';
import { AgentState } from '../../node-agent/state.ts';
import { AgentMetrics } from '../../node-agent/metrics.ts';
import { DataPlane } from '../../node-agent/dataplane.ts';
import type { DataPlaneCert } from '../../node-agent/dataplane.ts';
import type { AccessLogRecord } from '../../common/access-log.ts';
import { createTestPki, dataPlaneCert, demoWorkload } from '../common/hbone-fixtures.ts';
import { ManualClock } from '../../common/clock.ts';

const log = createLogger('test', { write: () => true });
const pki = createTestPki();
t.teardown(() => pki.cleanup());
const A_IP = '127.0.1.1', B_IP = '127.0.2.1', OUT_IP = '127.0.3.1';

const cert = (sa: string): DataPlaneCert => dataPlaneCert(pki, sa);
const certA = cert('a'), certB = cert('b');
const wl = demoWorkload;
function config(o: { policies?: AuthorizationPolicy[]; peerAuths?: PeerAuthentication[] } = {}): ProxyConfig {
  return {
    version: 1,
    mesh: { trustDomain: 'cluster.local', trustBundle: [pki.caPem], rootNamespace: 'rondo-system' },
    workloads: new Map([['uid-a', wl('a', A_IP, 'node-1', certA.identity)], ['uid-b', wl('b', B_IP, 'node-2', certB.identity)]]),
    services: new Map(),
    authorizationPolicies: new Map((o.policies ?? []).map((p) => [`${p.namespace}/${p.name}`, p])),
    peerAuthentications: new Map((o.peerAuths ?? []).map((p) => [`${p.namespace}/${p.name}`, p])),
    l7: new Map(),
  };
}

// Where the client "meant" to go, keyed by its source port (stands in for SO_ORIGINAL_DST).
const intended = new Map<number, { ip: string; port: number }>();
const logs: AccessLogRecord[] = [];
let logWaiters: (() => void)[] = [];
function record(r: AccessLogRecord): void {
  logs.push(r);
  const ws = logWaiters;
  logWaiters = [];
  for (const w of ws) w();
}
/** The first access-log record matching `pred`, once it is written (a connection's accounting is done by then). */
function logged(pred: (r: AccessLogRecord) => boolean): Promise<AccessLogRecord> {
  return new Promise((resolve) => {
    const check = (): void => { const r = logs.find(pred); if (r !== undefined) resolve(r); else logWaiters.push(check); };
    check();
  });
}
const m1 = new AgentMetrics(), m2 = new AgentMetrics();
let dp1: DataPlane, dp2: DataPlane;
const echoB = net.createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => undefined); s.on('data', (d) => s.write(d)); s.on('end', () => s.end()); });
const echoOut = net.createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => undefined); s.on('data', (d) => s.write(d)); s.on('end', () => s.end()); });

t.before(async () => {
  await new Promise<void>((r) => echoB.listen(0, B_IP, r));
  await new Promise<void>((r) => echoOut.listen(0, OUT_IP, r));
  const od = (s: net.Socket): { ip: string; port: number } | undefined => intended.get(s.remotePort ?? 0);
  dp1 = await DataPlane.create({ log, metrics: m1, host: '127.0.1.254', ports: { outbound: 0, inbound: 0, hbone: 0 }, originalDestination: od, accessLog: record });
  // node-2's HBONE listener sits on pod B's address at 15008, where node-1 will dial it.
  dp2 = await DataPlane.create({ log, metrics: m2, host: B_IP, ports: { outbound: 0, inbound: 0, hbone: 15008 }, accessLog: record, originalDestination: od });
  for (const [dp, node] of [[dp1, 'node-1'], [dp2, 'node-2']] as const) {
    dp.setState(AgentState.build(config(), node));
    dp.setCerts([certA, certB].filter((c) => (node === 'node-1' ? c === certA : c === certB)));
  }
});
t.teardown(async () => { await dp1.close(0); await dp2.close(0); echoB.close(); echoOut.close(); });

function collect(s: Duplex): Promise<{ data: string; error?: string }> {
  return new Promise((resolve) => {
    let data = '';
    s.on('data', (d: Buffer) => { data += d.toString(); });
    s.on('end', () => resolve({ data }));
    s.on('error', (e: Error) => resolve({ data, error: (e as { code?: string }).code ?? e.message }));
  });
}

let nextPort = 40000 + (process.pid % 1000) * 10;
async function roundTrip(listenerPort: number, host: string, from: string, dst: { ip: string; port: number }, msg: string): Promise<{ data: string; error?: string }> {
  // Register the intended destination before the server reads it: connect from a fixed port.
  const port = nextPort++;
  intended.set(port, dst);
  const s = net.connect({ host, port: listenerPort, localAddress: from, localPort: port, allowHalfOpen: true });
  s.on('error', () => undefined);
  const got = collect(s);
  s.end(msg);
  return got;
}

t.test('pod A reaches pod B on another node over HBONE, both agents account for it', async (t) => {
  const bPort = (echoB.address() as net.AddressInfo).port;
  const r = await roundTrip(dp1.ports.outbound, '127.0.1.254', A_IP, { ip: B_IP, port: bPort }, 'ping over hbone');
  t.same(r, { data: 'ping over hbone' });
  const out = await logged((l) => l.direction === 'outbound' && l.outcome === 'ok');
  const inn = await logged((l) => l.direction === 'inbound' && l.outcome === 'ok');
  t.equal(out?.identity, certB.identity, 'source side expected B');
  t.equal(inn?.identity, certA.identity, 'destination side saw A');
  t.equal(out?.bytesSent, 15);
  const text2 = await m2.registry.metrics();
  t.match(text2, /istio_tcp_connections_opened_total\{reporter="destination",source_workload="a",source_workload_namespace="demo",source_principal="spiffe:\/\/cluster.local\/ns\/demo\/sa\/a",destination_workload="b"[^}]*connection_security_policy="mutual_tls"\} 1/);
  const text1 = await m1.registry.metrics();
  t.match(text1, /istio_tcp_sent_bytes_total\{reporter="source",source_workload="a"[^}]*\} 15/);
  t.match(text1, /rondo_agent_pool_connections\{kind="sessions"\} 1/, 'one pooled HBONE session to node-2');
});

t.test('a DENY policy on B resets the client and is counted', async (t) => {
  const deny: AuthorizationPolicy = { namespace: 'demo', name: 'deny-a', action: 'DENY', rules: [{ from: [{ principals: [certA.identity.slice('spiffe://'.length)] }] }] };
  dp2.setState(AgentState.build(config({ policies: [deny] }), 'node-2'));
  t.teardown(() => dp2.setState(AgentState.build(config(), 'node-2')));
  const bPort = (echoB.address() as net.AddressInfo).port;
  const r = await roundTrip(dp1.ports.outbound, '127.0.1.254', A_IP, { ip: B_IP, port: bPort }, 'x');
  t.equal(r.data, '', 'no bytes reach the client');
  t.equal(r.error, 'ECONNRESET');
  t.match(await m2.registry.metrics(), /rondo_agent_refused_connections_total\{reason="policy_denied"\} 1/);
  // The refusal's code travels as is into both agents' access logs (the source learns it from the 403).
  t.match(logs.filter((l) => l.outcome === 'refused').slice(-2).sort((a, b) => a.direction.localeCompare(b.direction)), [
    { direction: 'inbound', code: 'RONDO_E_POLICY_DENIED', reason: /denied by DENY policy demo\/deny-a/ },
    { direction: 'outbound', code: 'RONDO_E_POLICY_DENIED' },
  ]);
});

t.test('plaintext to an enrolled pod: refused under STRICT, allowed and labelled under PERMISSIVE', async (t) => {
  const bPort = (echoB.address() as net.AddressInfo).port;
  const strict = await roundTrip(dp2.ports.inbound, B_IP, OUT_IP, { ip: B_IP, port: bPort }, 'plain');
  t.equal(strict.error, 'ECONNRESET');
  t.match(logs.at(-1), { direction: 'inbound-plaintext', outcome: 'refused', code: 'RONDO_E_PLAINTEXT_NOT_ALLOWED', reason: /mTLS mode is STRICT/ });
  t.match(await m2.registry.metrics(), /rondo_agent_refused_connections_total\{reason="plaintext_not_allowed"\} 1/);
  const pa: PeerAuthentication = { namespace: 'demo', name: 'permissive', mode: 'PERMISSIVE' };
  dp2.setState(AgentState.build(config({ peerAuths: [pa] }), 'node-2'));
  t.teardown(() => dp2.setState(AgentState.build(config(), 'node-2')));
  const ok = await roundTrip(dp2.ports.inbound, B_IP, OUT_IP, { ip: B_IP, port: bPort }, 'plain');
  t.same(ok, { data: 'plain' });
  await logged((l) => l.direction === 'inbound-plaintext' && l.outcome === 'ok');
  t.match(await m2.registry.metrics(), /istio_tcp_connections_closed_total\{reporter="destination"[^}]*destination_workload="b"[^}]*connection_security_policy="none"\} 1/);
});

t.test('a destination outside the mesh is passed through; an unknown source is refused', async (t) => {
  const oPort = (echoOut.address() as net.AddressInfo).port;
  t.same(await roundTrip(dp1.ports.outbound, '127.0.1.254', A_IP, { ip: OUT_IP, port: oPort }, 'out'), { data: 'out' });
  const stranger = await roundTrip(dp1.ports.outbound, '127.0.1.254', '127.0.1.99', { ip: OUT_IP, port: oPort }, 'who');
  t.equal(stranger.error, 'ECONNRESET');
  t.match(await m1.registry.metrics(), /rondo_agent_refused_connections_total\{reason="source_not_enrolled"\} 1/);
  t.match(logs.at(-1), { direction: 'outbound', outcome: 'refused', code: 'RONDO_E_SOURCE_NOT_ENROLLED' });
});

t.test('HBONE to a pod that is not on this node is refused with 404', async (t) => {
  // Point node-2's view at a state where B lives on node-1: B's agent must refuse.
  const moved = config();
  (moved.workloads as Map<string, Workload>).set('uid-b', wl('b', B_IP, 'node-1', certB.identity));
  dp2.setState(AgentState.build(moved, 'node-2'));
  t.teardown(() => dp2.setState(AgentState.build(config(), 'node-2')));
  const bPort = (echoB.address() as net.AddressInfo).port;
  const r = await roundTrip(dp1.ports.outbound, '127.0.1.254', A_IP, { ip: B_IP, port: bPort }, 'x');
  t.equal(r.error, 'ECONNRESET');
  const refusals = logs.filter((l) => l.outcome === 'refused').slice(-2);
  t.match(refusals.find((l) => l.direction === 'inbound'), { code: 'RONDO_E_UNKNOWN_DESTINATION' });
  t.match(refusals.find((l) => l.direction === 'outbound'), { code: 'RONDO_E_HBONE_REFUSED', reason: /refused with 404/ });
  t.match(await m2.registry.metrics(), /rondo_agent_refused_connections_total\{reason="unknown_destination"\} 1/);
});

t.test('both reporters count request bytes as received and response bytes as sent (Istio semantics)', async (t) => {
  // A server whose answer is twice the request, so the two directions cannot be confused.
  const doubler = net.createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => undefined); s.on('data', (d) => { s.write(d); s.write(d); }); s.on('end', () => s.end()); });
  await new Promise<void>((r) => doubler.listen(0, B_IP, r));
  t.teardown(() => doubler.close());
  const bytes = async (m: AgentMetrics, name: string, reporter: string): Promise<number> => {
    const re = new RegExp(`^${name}\\{reporter="${reporter}",source_workload="a"[^}]*destination_workload="b"[^}]*\\} (\\d+)$`, 'm');
    return Number(re.exec(await m.registry.metrics())?.[1] ?? 0);
  };
  const read = async (): Promise<number[]> => [
    await bytes(m1, 'istio_tcp_received_bytes_total', 'source'), await bytes(m1, 'istio_tcp_sent_bytes_total', 'source'),
    await bytes(m2, 'istio_tcp_received_bytes_total', 'destination'), await bytes(m2, 'istio_tcp_sent_bytes_total', 'destination'),
  ];
  const before = await read();
  const target = `${B_IP}:${(doubler.address() as net.AddressInfo).port}`;
  const r = await roundTrip(dp1.ports.outbound, '127.0.1.254', A_IP, { ip: B_IP, port: (doubler.address() as net.AddressInfo).port }, '0123456789');
  t.equal(r.data, '01234567890123456789');
  await logged((l) => l.direction === 'outbound' && l.target === target);
  await logged((l) => l.direction === 'inbound' && l.target === target);
  const after = await read();
  t.same(after.map((v, i) => v - before[i]!), [10, 20, 10, 20], 'source and destination: received 10 (request), sent 20 (response)');
});

t.test('close(deadline) lets open connections run until the deadline on its clock, then resets them', async (t) => {
  const clock = new ManualClock();
  const own: AccessLogRecord[] = [];
  const od = (s: net.Socket): { ip: string; port: number } | undefined => intended.get(s.remotePort ?? 0);
  const dp = await DataPlane.create({ log, metrics: new AgentMetrics(), host: '127.0.1.253', ports: { outbound: 0, inbound: 0, hbone: 0 }, originalDestination: od, accessLog: (r) => own.push(r), clock });
  t.teardown(() => dp.close(0));
  dp.setState(AgentState.build(config(), 'node-1'));
  // A held passthrough connection: pod A to the outside echo server, never ended by the client.
  const port = nextPort++;
  intended.set(port, { ip: OUT_IP, port: (echoOut.address() as net.AddressInfo).port });
  const s = net.connect({ host: '127.0.1.253', port: dp.ports.outbound, localAddress: A_IP, localPort: port });
  s.on('error', () => undefined);
  const closed = new Promise<void>((r) => s.once('close', () => r()));
  await new Promise<void>((r) => { s.once('data', () => r()); s.write('hold'); }); // echoed: the pump runs
  t.equal(dp.connections().length, 1);
  let drained = false;
  const closing = dp.close(1000).then(() => { drained = true; });
  await clock.advanceAsync(950);
  t.equal(drained, false, 'still draining before the deadline');
  t.equal(dp.connections().length, 1, 'the open connection is left alone until then');
  t.same(own, []);
  await clock.advanceAsync(50);
  await closing;
  await closed;
  t.same(dp.connections(), [], 'reset at the deadline');
  t.match(own, [{ direction: 'outbound', via: 'passthrough' }], 'and accounted for');
});
