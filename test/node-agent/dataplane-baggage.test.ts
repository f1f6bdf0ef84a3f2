// The destination agent's source labels come from the verified peer identity and what the
// control plane knows about it; the peer's `baggage` header (which it writes itself) only
// picks among workloads that identity really runs, and never creates a series of its own.
import t from 'tap';
import net from 'node:net';
import tls from 'node:tls';
import http2 from 'node:http2';
import type { ClientHttp2Session } from 'node:http2';
import { createLogger } from '../../common/log.ts';
import type { ProxyConfig } from '../../common/proxy-config.ts';
import type { Workload } from '../../common/wire.ts';
import { buildBaggage } from '../../common/hbone.ts';
import { AgentState } from '../../node-agent/state.ts';
import { AgentMetrics } from '../../node-agent/metrics.ts';
import { DataPlane } from '../../node-agent/dataplane.ts';
import { createTestPki, dataPlaneCert, demoWorkload } from '../common/hbone-fixtures.ts';

const log = createLogger('test', { write: () => true });
const pki = createTestPki();
t.teardown(() => pki.cleanup());
const B_IP = '127.0.43.1';
const certA = dataPlaneCert(pki, 'a'), certB = dataPlaneCert(pki, 'b');
// One service account shared by two Deployments (alpha, beta), and one the config does not know.
const certShared = dataPlaneCert(pki, 'shared'), certGhost = dataPlaneCert(pki, 'ghost');
const wl = (w: Workload, over: Partial<Workload>): [string, Workload] => { const x = { ...w, ...over }; return [x.uid, x]; };

const config: ProxyConfig = {
  version: 1,
  mesh: { trustDomain: 'cluster.local', trustBundle: [pki.caPem], rootNamespace: 'rondo-system' },
  workloads: new Map([
    wl(demoWorkload('a', '127.0.44.1', 'node-1', certA.identity), {}),
    wl(demoWorkload('a', '127.0.44.2', 'node-1', certA.identity), { uid: 'uid-a2', name: 'a-1' }),
    wl(demoWorkload('b', B_IP, 'node-2', certB.identity), {}),
    wl(demoWorkload('alpha', '127.0.44.3', 'node-1', certShared.identity), { serviceAccount: 'shared' }),
    wl(demoWorkload('beta', '127.0.44.4', 'node-3', certShared.identity), { serviceAccount: 'shared' }),
  ]),
  services: new Map(), authorizationPolicies: new Map(), peerAuthentications: new Map(), l7: new Map(),
};

const metrics = new AgentMetrics();
let dp: DataPlane;
const echo = net.createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => undefined); s.on('data', (d) => s.write(d)); s.on('end', () => s.end()); });
const sessions: ClientHttp2Session[] = [];

t.before(async () => {
  await new Promise<void>((r) => echo.listen(0, B_IP, r));
  dp = await DataPlane.create({ log, metrics, host: B_IP, ports: { outbound: 0, inbound: 0, hbone: 0 }, originalDestination: () => undefined });
  dp.setState(AgentState.build(config, 'node-2'));
  dp.setCerts([certB]);
});
t.teardown(async () => { for (const s of sessions) s.destroy(); await dp.close(0); echo.close(); });

function connectSession(ctx: tls.SecureContext): Promise<ClientHttp2Session> {
  const port = dp.ports.hbone;
  return new Promise((resolve, reject) => {
    const s = http2.connect(`https://${B_IP}:${port}`, {
      createConnection: () => tls.connect({ host: B_IP, port, secureContext: ctx, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined }),
    });
    s.once('connect', () => { sessions.push(s); resolve(s); });
    s.once('error', reject);
  });
}

/** One accepted tunnel with this baggage, carried to its end (so opened and closed are counted). */
async function tunnel(session: ClientHttp2Session, baggage: string | undefined): Promise<void> {
  const s = session.request({
    ':method': 'CONNECT', ':authority': `${B_IP}:${(echo.address() as net.AddressInfo).port}`,
    ...(baggage !== undefined ? { baggage } : {}),
  }, { endStream: false });
  s.on('error', () => undefined);
  const status = await new Promise<unknown>((r) => s.once('response', (h) => r(h[':status'])));
  if (status !== 200) throw new Error(`CONNECT answered ${String(status)}`);
  s.resume();
  await new Promise<void>((r) => { s.once('close', r); s.end(); });
}

/** Label sets (one line each) of istio_tcp_connections_opened_total. */
async function openedSeries(): Promise<string[]> {
  return (await metrics.exposition()).split('\n').filter((l) => l.startsWith('istio_tcp_connections_opened_total{'));
}
const seriesOf = async (principal: string): Promise<string[]> => (await openedSeries()).filter((l) => l.includes(`source_principal="${principal}"`));

t.test('forged baggage does not change the source labels: they come from the peer certificate', async (t) => {
  const s = await connectSession(certA.secureContext);
  await tunnel(s, buildBaggage({ namespace: 'evil', name: 'x-0', workloadName: 'forged', app: 'forged', version: 'v666' }));
  await tunnel(s, buildBaggage({ namespace: 'demo', name: 'b-0', workloadName: 'b' }));
  await tunnel(s, undefined);
  const series = await seriesOf(certA.identity);
  t.equal(series.length, 1, 'one label set for the three tunnels');
  t.match(series[0], /source_workload="a",source_workload_namespace="demo",source_principal="spiffe:\/\/cluster.local\/ns\/demo\/sa\/a"[^}]*destination_workload="b"[^}]*\} 3$/);
  t.notMatch((await metrics.exposition()), /forged|evil/);
});

t.test('many distinct baggage values create no new series', async (t) => {
  const s = await connectSession(certA.secureContext);
  const before = (await openedSeries()).length;
  for (let i = 0; i < 200; i++) await tunnel(s, buildBaggage({ namespace: `ns-${i}`, name: `p-${i}`, workloadName: `w-${i}` }));
  t.equal((await openedSeries()).length, before, 'no series added by 200 invented baggage headers');
  t.match((await seriesOf(certA.identity))[0], /source_workload="a"[^}]*\} 203$/);
});

t.test('an identity shared by several workloads: baggage picks among them only when it names one of them', async (t) => {
  const s = await connectSession(certShared.secureContext);
  await tunnel(s, buildBaggage({ namespace: 'demo', name: 'beta-0', workloadName: 'beta' }));
  await tunnel(s, buildBaggage({ namespace: 'demo', name: 'alpha-0', workloadName: 'alpha' }));
  await tunnel(s, buildBaggage({ namespace: 'demo', name: 'x', workloadName: 'gamma' }));
  await tunnel(s, buildBaggage({ namespace: 'other', name: 'beta-0', workloadName: 'beta' }));
  await tunnel(s, undefined);
  const series = await seriesOf(certShared.identity);
  const count = (workload: string): number => Number(series.find((l) => l.includes(`source_workload="${workload}",source_workload_namespace="demo"`))?.split(' ').at(-1) ?? 0);
  t.equal(count('beta'), 1, 'baggage naming a workload of that identity picks it');
  t.equal(count('alpha'), 1);
  t.equal(count('unknown'), 3, 'an unknown workload, another namespace or no baggage: workload unknown, namespace from the identity');
  t.equal(series.length, 3);
});

t.test('an identity the config has no workload for: namespace from the SPIFFE ID, workload unknown', async (t) => {
  const s = await connectSession(certGhost.secureContext);
  await tunnel(s, buildBaggage({ namespace: 'demo', name: 'ghost-0', workloadName: 'ghost' }));
  const series = await seriesOf(certGhost.identity);
  t.equal(series.length, 1);
  t.match(series[0], /source_workload="unknown",source_workload_namespace="demo",/);
});
