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
import { Agent } from '../../node-agent/agent.ts';

const log = createLogger('test', { write: () => true });

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

async function poll(url: string, want: number): Promise<number> {
  let status = 0;
  for (let i = 0; i < 300 && status !== want; i++) {
    status = await fetch(url).then((r) => r.status, () => 0);
    if (status !== want) await new Promise((r) => setTimeout(r, 50));
  }
  return status;
}

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
