// The whole mesh in a lab: real controller, real node agents (capture, SO_ORIGINAL_DST,
// HBONE between nodes). Needs root; the lab is removed in teardown even on failure.
import t from 'tap';
import { deploymentDoc, labDoc, labSpec, namespaceDoc, serviceDoc, tcpEcho } from '../helpers/lab-specs.ts';
import { labSkipReason, withLab } from '../helpers/lab.ts';

const skip = labSkipReason();
const spec = labSpec(
  labDoc(),
  namespaceDoc('demo', { ambient: true }),
  namespaceDoc('outside'),
  deploymentDoc({ namespace: 'demo', name: 'server', node: 'node-2', labels: { version: 'v1' }, command: tcpEcho(9000) }),
  serviceDoc({ namespace: 'demo', name: 'server', port: 80, targetPort: 9000 }),
  deploymentDoc({ namespace: 'demo', name: 'client', node: 'node-1', labels: { version: 'v1' }, command: tcpEcho(9001) }),
  deploymentDoc({ namespace: 'outside', name: 'stranger', node: 'node-1', serviceAccount: null, command: tcpEcho(9002) }),
);

t.test('mesh: pod to pod and pod to service across nodes over HBONE; plaintext refused under STRICT', { skip: skip ?? false, timeout: 180_000 }, async (t) => {
  const lab = await withLab(t, spec);
  await lab.waitForPort('demo/server', 9000, 20_000);
  const serverIp = lab.podIp('demo/server');
  const vip = lab.serviceIp('demo/server');
  const send = (from: string, host: string, port: number, msg: string) =>
    lab.exec(from, ['rondo-demo', 'tcp-client', host, String(port), msg, '--timeout-ms', '5000'], { allowFail: true, timeoutMs: 15_000 });

  // Readiness of the agents is the precondition for capture being in place.
  let direct = await send('demo/client', serverIp, 9000, 'hello-direct');
  for (let i = 0; i < 40 && !direct.stdout.includes('hello-direct'); i++) {
    await new Promise((r) => setTimeout(r, 250));
    direct = await send('demo/client', serverIp, 9000, 'hello-direct');
  }
  t.match(direct.stdout, /hello-direct/, 'pod IP reached');
  const viaVip = await send('demo/client', vip, 80, 'hello-vip');
  t.match(viaVip.stdout, /hello-vip/, 'service VIP reached');

  const m2 = await lab.execNode('node-2', ['curl', '-s', 'http://127.0.0.1:15020/metrics'], { allowFail: true });
  t.match(m2.stdout, /istio_tcp_connections_opened_total\{reporter="destination",source_workload="client",source_workload_namespace="demo",source_principal="spiffe:\/\/cluster.local\/ns\/demo\/sa\/client",destination_workload="server"[^}]*connection_security_policy="mutual_tls"\} [1-9]/,
    'destination agent saw the client identity over mTLS');

  const plain = await send('outside/stranger', serverIp, 9000, 'hello-plain');
  t.notMatch(plain.stdout, /hello-plain/, 'plaintext from outside the mesh refused (STRICT)');
  const m2b = await lab.execNode('node-2', ['curl', '-s', 'http://127.0.0.1:15020/metrics'], { allowFail: true });
  t.match(m2b.stdout, /rondo_agent_refused_connections_total\{reason="plaintext_not_allowed"\} [1-9]/);
});
