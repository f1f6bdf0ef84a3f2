// A peer that resets its CONNECTs while the agent is still connecting to the pod: the pod
// connects must be closed with the streams (no descriptor left behind) and the late connect
// completion must not answer a stream that is gone (ERR_HTTP2_INVALID_STREAM, uncaught).
import t from 'tap';
import net from 'node:net';
import tls from 'node:tls';
import http2 from 'node:http2';
import { readdirSync } from 'node:fs';
import type { ClientHttp2Session, ClientHttp2Stream } from 'node:http2';
import { createLogger } from '../../common/log.ts';
import type { ProxyConfig } from '../../common/proxy-config.ts';
import { AgentState } from '../../node-agent/state.ts';
import { AgentMetrics } from '../../node-agent/metrics.ts';
import { DataPlane } from '../../node-agent/dataplane.ts';
import { createTestPki, dataPlaneCert, demoWorkload } from '../common/hbone-fixtures.ts';
import { stalledListener } from '../helpers/stalled-listener.ts';

const log = createLogger('test', { write: () => true });
const pki = createTestPki();
t.teardown(() => pki.cleanup());
const B_IP = '127.0.42.1';
const N = 32;
const certA = dataPlaneCert(pki, 'a'), certB = dataPlaneCert(pki, 'b');

const config: ProxyConfig = {
  version: 1,
  mesh: { trustDomain: 'cluster.local', trustBundle: [pki.caPem], rootNamespace: 'rondo-system' },
  workloads: new Map([['uid-a', demoWorkload('a', '127.0.41.1', 'node-1', certA.identity)], ['uid-b', demoWorkload('b', B_IP, 'node-2', certB.identity)]]),
  services: new Map(), authorizationPolicies: new Map(), peerAuthentications: new Map(), l7: new Map(),
};

const openFds = (): number => readdirSync('/proc/self/fd').length;

async function until(check: () => boolean): Promise<void> {
  // Waits on a condition, not on time: a regression hangs and tap's timeout reports it.
  while (!check()) await new Promise((r) => setTimeout(r, 10));
}

function connectSession(port: number): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const s = http2.connect(`https://${B_IP}:${port}`, {
      createConnection: () => tls.connect({
        host: B_IP, port, secureContext: certA.secureContext, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined,
      }),
    });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

t.test('CONNECTs reset before the pod connect completes leave no descriptor and no uncaught error behind', async (t) => {
  const uncaught: unknown[] = [];
  const onUncaught = (e: unknown): void => { uncaught.push(e); };
  process.on('uncaughtException', onUncaught);
  t.teardown(() => { process.off('uncaughtException', onUncaught); });

  const pod = await stalledListener(B_IP, N);
  t.teardown(() => pod.close());
  const echo = net.createServer((s) => { s.on('error', () => undefined); s.on('data', (d) => s.write(d)); });
  await new Promise<void>((r) => echo.listen(0, B_IP, r));
  t.teardown(() => { echo.close(); });
  const metrics = new AgentMetrics();
  // A connect timeout far beyond the test: the fix must not rely on it to free descriptors.
  const dp = await DataPlane.create({
    log, metrics, host: B_IP, ports: { outbound: 0, inbound: 0, hbone: 0 }, originalDestination: () => undefined, connectTimeoutMs: 600_000,
  });
  t.teardown(() => dp.close(0));
  dp.setState(AgentState.build(config, 'node-2'));
  dp.setCerts([certB]);

  const session = await connectSession(dp.ports.hbone);
  t.teardown(() => { session.destroy(); });
  const baseline = openFds();

  const streams: ClientHttp2Stream[] = [];
  for (let i = 0; i < N; i++) {
    const s = session.request({ ':method': 'CONNECT', ':authority': `${B_IP}:${pod.port}` }, { endStream: false });
    s.on('error', () => undefined);
    streams.push(s);
  }
  // Each CONNECT is now a pod connect in SYN_SENT inside the agent.
  await until(() => openFds() >= baseline + N);
  for (const s of streams) s.close(http2.constants.NGHTTP2_CANCEL);
  // The PING is answered after the RST_STREAMs before it: the agent has seen every reset.
  await new Promise<void>((r, j) => { session.ping((e) => { if (e === null) r(); else j(e); }); });
  // The pod accepts again: connects the agent did not abandon complete about a second later.
  pod.release();
  await until(() => openFds() <= baseline || uncaught.length > 0);
  t.same(uncaught, [], 'no error reached the process-wide handler');
  t.equal(openFds(), baseline, 'descriptors back to the baseline');

  // The agent still serves this peer: a tunnel to another pod port carries bytes.
  const s = session.request({ ':method': 'CONNECT', ':authority': `${B_IP}:${(echo.address() as net.AddressInfo).port}` }, { endStream: false });
  const status = await new Promise<unknown>((r) => s.once('response', (h) => r(h[':status'])));
  t.equal(status, 200);
  const echoed = new Promise<string>((r) => s.once('data', (d: Buffer) => r(d.toString())));
  s.write('still here');
  t.equal(await echoed, 'still here');
  s.close();
});
