// The agent against a real controller process on 127.0.0.1, with two data-path workers.
// Capture is off (it would touch this namespace's iptables) and SO_ORIGINAL_DST falls back
// to the local address; the e2e tests cover both in network namespaces.
import t from 'tap';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../common/log.ts';
import type { Workload } from '../../common/wire.ts';
import { Agent } from '../../node-agent/agent.ts';
import { CertificateAuthority } from '../../controller/ca.ts';
import { PushServer } from '../../controller/push/server.ts';
import { TokenFileAuthenticator } from '../../controller/push/auth.ts';
import { createControllerMetrics } from '../../controller/metrics.ts';
import type { ProxyView } from '../../controller/push/view.ts';
import { freePort, poll } from '../helpers/net.ts';

const log = createLogger('test', { write: () => true });



t.test('agent: config, certificates, workers, health, admin, aggregated metrics, drain', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rondo-agent-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const state = join(dir, 'state');
  mkdirSync(state);
  writeFileSync(join(state, 'ns.yaml'), 'apiVersion: v1\nkind: Namespace\nmetadata: { name: demo, labels: { rondo.dev/dataplane-mode: ambient } }\n');
  writeFileSync(join(state, 'web.yaml'), 'apiVersion: v1\nkind: Pod\nmetadata: { name: web-1, namespace: demo, uid: uid-web-1, labels: { app: web } }\nspec: { nodeName: node-1, serviceAccountName: web }\nstatus: { phase: Running, podIP: 127.0.1.1 }\n');
  writeFileSync(join(dir, 'tokens.json'), JSON.stringify({ 'node-1-token-0123456789': { kind: 'node-agent', node: 'node-1' } }));
  writeFileSync(join(dir, 'token'), 'node-1-token-0123456789\n');
  const [push, cmetrics, admin, metrics, outbound, inbound, hbone] = await Promise.all(Array.from({ length: 7 }, freePort));
  const ctl = spawn(process.execPath, [join(import.meta.dirname, '../../controller/main.ts'), '--files', state, '--listen', '127.0.0.1',
    '--ca-dir', join(dir, 'ca'), '--tokens', join(dir, 'tokens.json'), '--push-port', String(push), '--metrics-port', String(cmetrics), '--debounce-ms', '10'],
  { stdio: ['ignore', 'ignore', 'ignore'] });
  t.teardown(() => { ctl.kill('SIGKILL'); });
  t.equal(await poll(`http://127.0.0.1:${cmetrics}/healthz/ready`, 200), 200, 'controller ready');

  const agent = await Agent.create({
    node: 'node-1', controller: `127.0.0.1:${push}`, tokenFile: join(dir, 'token'), caFile: join(dir, 'ca', 'root-cert.pem'), log,
    workers: 2, adminPort: admin!, metricsPort: metrics!, host: '127.0.0.1', ports: { outbound: outbound!, inbound: inbound!, hbone: hbone! },
    capture: false, checkOrigDst: false, drainMs: 500,
  });
  t.teardown(() => agent.close(0));
  t.equal((await fetch(`http://127.0.0.1:${metrics}/healthz/ready`)).status, 503, 'not ready before the first config');
  const running = agent.run();
  t.equal(await poll(`http://127.0.0.1:${metrics}/healthz/ready`, 200), 200, 'ready once config and certificates are in');

  const certs = await (await fetch(`http://127.0.0.1:${admin}/certs`)).json() as { identity: string; expiresInSeconds: number }[];
  t.same(certs.map((c) => c.identity), ['spiffe://cluster.local/ns/demo/sa/web']);
  t.ok(certs[0]!.expiresInSeconds > 3600, 'certificate valid for hours');
  const dump = await (await fetch(`http://127.0.0.1:${admin}/config_dump`)).json() as { version: number; config: { workloads: Record<string, { name: string }> } };
  t.equal(dump.config.workloads['uid-web-1']?.name, 'web-1');

  // A connection the agent must refuse (not addressed to an enrolled pod) is counted by a
  // worker and shows up in the primary's aggregated /metrics.
  const s = net.connect(inbound!, '127.0.0.1');
  await new Promise<void>((r) => { s.on('error', () => r()); s.on('close', () => r()); s.resume(); });
  const text = await (await fetch(`http://127.0.0.1:${metrics}/metrics`)).text();
  t.match(text, /rondo_agent_refused_connections_total\{reason="unknown_destination"\} 1/);
  t.match(text, /rondo_agent_config_version [1-9]/);
  t.match(text, /^rondo_push_connected 1$/m, 'the push connection state, from the push client');
  t.notMatch(text, /rondo_agent_connected/, 'no second gauge that nothing sets');
  t.match(text, /rondo_cert_expiry_timestamp_seconds\{identity="spiffe:\/\/cluster.local\/ns\/demo\/sa\/web"\}/);
  t.same(await (await fetch(`http://127.0.0.1:${admin}/connections`)).json(), []);

  await agent.close(500);
  await running;
  t.equal(await fetch(`http://127.0.0.1:${metrics}/healthz/ready`).then((r) => r.status, () => 0), 0, 'listeners closed after drain');
});

t.test('bad inputs fail at create() with a clear error', async (t) => {
  await t.rejects(Agent.create({ node: 'n', controller: '127.0.0.1:1', tokenFile: '/nonexistent/token', caFile: '/nonexistent/ca', log, workers: 0, capture: false, checkOrigDst: false }),
    { code: 'RONDO_E_CONFIG', message: /token file/ });
});

t.test('a push the agent cannot apply is NACKed with its reason; the previous config serves, later pushes apply, readiness stays true', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rondo-agent-bad-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // An in-process controller: the test decides what every version holds.
  const ca = await CertificateAuthority.loadOrCreate({ dir: join(dir, 'ca'), trustDomain: 'cluster.local', ttlSeconds: 3600 });
  const serverLog: Record<string, unknown>[] = [];
  const metrics = createControllerMetrics();
  let current: ProxyView | undefined;
  const server = await PushServer.create({
    host: '127.0.0.1', port: 0, tls: await ca.issueServing({ ips: ['127.0.0.1'], dnsNames: [] }),
    authenticator: new TokenFileAuthenticator({ 'node-1-token-0123456789': { kind: 'node-agent', node: 'node-1' } }),
    viewFor: () => current!, signCsr: (_p, identity, csr) => ca.signCsr(csr, identity), metrics,
    log: createLogger('ctl', { write: (l: string) => serverLog.push(JSON.parse(l) as Record<string, unknown>) }, 'warn'),
  });
  t.teardown(() => server.close());
  const wl = (name: string, ip: string): Workload => ({
    uid: `uid-${name}`, namespace: 'demo', name, workloadName: name, serviceAccount: 'web', identity: 'spiffe://cluster.local/ns/demo/sa/web',
    ips: [ip], node: 'node-1', labels: {}, enrolled: true,
  });
  let version = 0;
  const publish = (bundle: string[], ...ws: Workload[]): void => {
    current = {
      mesh: { trustDomain: 'cluster.local', trustBundle: bundle, rootNamespace: 'rondo-system' },
      resources: { workloads: new Map(ws.map((w) => [w.uid, w])), services: new Map(), authorizationPolicies: new Map(), peerAuthentications: new Map(), l7: new Map() },
    };
    server.publish(++version);
  };
  writeFileSync(join(dir, 'token'), 'node-1-token-0123456789\n');
  writeFileSync(join(dir, 'ca.pem'), ca.trustBundle.join(''));
  const [admin, metricsPort, outbound, inbound, hbone] = await Promise.all(Array.from({ length: 5 }, freePort));
  const agent = await Agent.create({
    node: 'node-1', controller: `127.0.0.1:${server.address.port}`, tokenFile: join(dir, 'token'), caFile: join(dir, 'ca.pem'), log,
    workers: 0, adminPort: admin!, metricsPort: metricsPort!, host: '127.0.0.1', ports: { outbound: outbound!, inbound: inbound!, hbone: hbone! },
    capture: false, checkOrigDst: false,
  });
  t.teardown(() => agent.close(0));
  const running = agent.run();
  const dump = async (): Promise<{ version: number; rejected: { type: string; reason: string }[]; config: { workloads: Record<string, unknown>; mesh: { trustBundle: string[] } } }> =>
    await (await fetch(`http://127.0.0.1:${admin}/config_dump`)).json() as never;

  publish(ca.trustBundle, wl('web-1', '127.0.1.1'));
  t.equal(await poll(`http://127.0.0.1:${metricsPort}/healthz/ready`, 200), 200, 'ready on the first config');
  const certsBefore = await (await fetch(`http://127.0.0.1:${admin}/certs`)).json() as unknown[];

  publish([...ca.trustBundle, 'garbage'], wl('web-1', '127.0.1.1'), wl('web-2', '127.0.1.2'));
  for (let i = 0; i < 200 && (await metrics.nacks.get()).values.length === 0; i++) await new Promise((r) => setTimeout(r, 25));
  t.match((await metrics.nacks.get()).values, [{ labels: { type: 'mesh' }, value: 1 }], 'the controller got a NACK for the bundle');
  const nackLog = serverLog.find((l) => l['msg'] === 'proxy rejected resources');
  t.match(nackLog?.['rejected'], [{ type: 'mesh', key: 'trustBundle', reason: /entry 1 is not a PEM certificate/ }], 'with the reason');
  t.match(server.proxies()[0], { version: 2, ackedVersion: 1 }, 'the bad version is not reported as applied');
  let d = await dump();
  t.same(d.config.mesh.trustBundle, ca.trustBundle, 'the previous trust bundle still serves');
  t.ok('uid-web-2' in d.config.workloads, 'the rest of that push applied');
  t.match(d.rejected, [{ type: 'mesh' }], 'the admin dump names what was refused');
  t.same(await (await fetch(`http://127.0.0.1:${admin}/certs`)).json(), certsBefore, 'certificates untouched');
  const ready = await fetch(`http://127.0.0.1:${metricsPort}/healthz/ready`);
  t.equal(ready.status, 200, 'still ready: it serves a config the controller knows about');

  publish(ca.trustBundle, wl('web-1', '127.0.1.1'), wl('web-2', '127.0.1.2'), wl('web-3', '127.0.1.3'));
  for (let i = 0; i < 200 && !('uid-web-3' in (await dump()).config.workloads); i++) await new Promise((r) => setTimeout(r, 25));
  d = await dump();
  t.ok('uid-web-3' in d.config.workloads, 'a later push applies');
  t.equal(d.version, 3);
  t.same(d.rejected, [], 'nothing refused any more');
  for (let i = 0; i < 200 && server.proxies()[0]?.ackedVersion !== 3; i++) await new Promise((r) => setTimeout(r, 25));
  t.equal(server.proxies()[0]?.ackedVersion, 3, 'and is ACKed');
  t.match(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text(), /rondo_agent_config_version 3/);
  await agent.close(0);
  await running;
});
