// Every component's /metrics passes `promtool check metrics` with no output: a real controller
// process and a real agent (with data-path workers, so the primary's aggregated text, and
// without), plus the agent's Istio series built in-process. The process metrics come from
// common/process-metrics.ts, which the waypoint serves too.
import t from 'tap';
import net from 'node:net';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { createLogger } from '../../common/log.ts';
import { collectProcessMetrics } from '../../common/process-metrics.ts';
import { Agent } from '../../node-agent/agent.ts';
import { tcpLabels } from '../../common/istio-labels.ts';
import type { Workload } from '../../common/wire.ts';
import { AgentMetrics } from '../../node-agent/metrics.ts';
import { freePort, poll } from '../helpers/net.ts';

const log = createLogger('test', { write: () => true });
const havePromtool = spawnSync('sh', ['-c', 'command -v promtool']).status === 0;
const skip = !havePromtool && 'promtool not installed: scripts/ensure-deps.ts (run by npm test as root) installs the Debian package prometheus';

/** promtool's verdict on an exposition text: exit status and everything it printed. */
function promtool(text: string): { status: number | null; output: string } {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  return { status: r.status, output: `${r.stdout}${r.stderr}`.trim() };
}



t.test('the process metrics alone are clean, with and without a prefix, and keep the per-type gauges', { skip }, async (t) => {
  for (const prefix of [undefined, 'rondo_controller_']) {
    const r = new Registry();
    collectProcessMetrics(r, prefix);
    const text = await r.metrics();
    t.same(promtool(text), { status: 0, output: '' }, `prefix ${prefix ?? '(none)'}`);
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) t.notMatch(text, new RegExp(`^${prefix ?? ''}${name} `, 'm'));
    t.match(text, new RegExp(`^${prefix ?? ''}nodejs_active_handles\\{type="\\w+"\\} \\d`, 'm'), 'the handle count is still there, by type');
  }
});

t.test('a real controller and a real agent serve /metrics that promtool passes with no output', { skip }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rondo-promtool-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const state = join(dir, 'state');
  mkdirSync(state);
  writeFileSync(join(state, 'ns.yaml'), 'apiVersion: v1\nkind: Namespace\nmetadata: { name: demo, labels: { rondo.dev/dataplane-mode: ambient } }\n');
  writeFileSync(join(state, 'web.yaml'), 'apiVersion: v1\nkind: Pod\nmetadata: { name: web-1, namespace: demo, uid: uid-web-1, labels: { app: web } }\nspec: { nodeName: node-1, serviceAccountName: web }\nstatus: { phase: Running, podIP: 127.0.1.1 }\n');
  writeFileSync(join(dir, 'tokens.json'), JSON.stringify({ 'node-1-token-0123456789': { kind: 'node-agent', node: 'node-1' } }));
  writeFileSync(join(dir, 'token'), 'node-1-token-0123456789\n');
  const [push, cmetrics] = await Promise.all([freePort(), freePort()]);
  const ctl = spawn(process.execPath, [join(import.meta.dirname, '../../controller/main.ts'), '--files', state, '--listen', '127.0.0.1',
    '--ca-dir', join(dir, 'ca'), '--tokens', join(dir, 'tokens.json'), '--push-port', String(push), '--metrics-port', String(cmetrics), '--debounce-ms', '10'],
  { stdio: ['ignore', 'ignore', 'ignore'] });
  t.teardown(() => { ctl.kill('SIGKILL'); });
  t.equal(await poll(`http://127.0.0.1:${cmetrics}/healthz/ready`, 200), 200, 'controller ready');

  for (const workers of [0, 2]) {
    const [admin, metrics, outbound, inbound, hbone] = await Promise.all(Array.from({ length: 5 }, freePort));
    const agent = await Agent.create({
      node: 'node-1', controller: `127.0.0.1:${push}`, tokenFile: join(dir, 'token'), caFile: join(dir, 'ca', 'root-cert.pem'), log,
      workers, adminPort: admin!, metricsPort: metrics!, host: '127.0.0.1', ports: { outbound: outbound!, inbound: inbound!, hbone: hbone! },
      capture: false, checkOrigDst: false, drainMs: 500,
    });
    const running = agent.run();
    t.equal(await poll(`http://127.0.0.1:${metrics}/healthz/ready`, 200), 200, `agent (${workers} workers) ready`);
    // A refused connection, so a labelled agent counter has a series.
    const s = net.connect(inbound!, '127.0.0.1');
    await new Promise<void>((r) => { s.on('error', () => r()); s.on('close', () => r()); s.resume(); });
    const text = await (await fetch(`http://127.0.0.1:${metrics}/metrics`)).text();
    t.match(text, /^process_resident_memory_bytes \d/m, 'process metrics are part of it');
    t.same(promtool(text), { status: 0, output: '' }, `agent /metrics with ${workers} workers`);
    await agent.close(0);
    await running;
  }

  const text = await (await fetch(`http://127.0.0.1:${cmetrics}/metrics`)).text();
  t.match(text, /^rondo_controller_process_resident_memory_bytes \d/m, 'process metrics are part of it');
  t.match(text, /^rondo_controller_csrs_total\{result="signed"\} [1-9]/m, 'the agents\' certificates were signed');
  t.same(promtool(text), { status: 0, output: '' }, 'controller /metrics');
});

t.test('the agent\'s Istio TCP series with the process metrics are clean', { skip }, async (t) => {
  const m = new AgentMetrics({ processMetrics: true });
  const client: Workload = { uid: 'uid-a', namespace: 'demo', name: 'a-1', workloadName: 'a', serviceAccount: 'a', identity: 'spiffe://cluster.local/ns/demo/sa/a', ips: ['10.244.1.2'], node: 'node-1', labels: { app: 'a' }, enrolled: true };
  const server: Workload = { ...client, uid: 'uid-b', name: 'b-1', workloadName: 'b', serviceAccount: 'b', identity: 'spiffe://cluster.local/ns/demo/sa/b', ips: ['10.244.1.3'] };
  const c = m.connection(tcpLabels({ reporter: 'destination', source: client, destination: server, mtls: true }));
  c.addReceived(10);
  c.close();
  m.refused('RONDO_E_POLICY_DENIED');
  const text = await m.exposition();
  t.match(text, /^istio_tcp_connections_opened_total\{/m);
  t.same(promtool(text), { status: 0, output: '' });
});
