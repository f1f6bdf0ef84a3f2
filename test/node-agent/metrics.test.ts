import t from 'tap';
import { spawnSync } from 'node:child_process';
import type { Service, Workload } from '../../common/wire.ts';
import { AgentMetrics } from '../../node-agent/metrics.ts';
import { tcpLabels } from '../../common/istio-labels.ts';

const TD = 'cluster.local';
const client: Workload = {
  uid: 'u1', namespace: 'demo', name: 'client-7d9f', workloadName: 'client', serviceAccount: 'client',
  identity: `spiffe://${TD}/ns/demo/sa/client`, ips: ['10.244.1.5'], node: 'node-1', labels: { app: 'client' }, enrolled: true,
};
const server: Workload = { ...client, uid: 'u2', name: 'server-x', workloadName: 'server', identity: `spiffe://${TD}/ns/demo/sa/server`, ips: ['10.244.2.7'] };
const svc: Service = { namespace: 'demo', name: 'server', hostname: 'server.demo.svc.cluster.local', vips: ['10.96.0.10'], ports: [], endpoints: [] };

/** Value of one sample line selected by metric name and label substrings. */
function sample(text: string, name: string, ...has: string[]): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue;
    if (has.every((h) => line.includes(h))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

t.test('opened on connect; bytes on scrape for long-lived connections; closed once', async (t) => {
  const m = new AgentMetrics();
  const labels = tcpLabels({ reporter: 'source', source: client, destination: server, service: svc, mtls: true });
  const c = m.connection(labels);
  c.addSent(100);
  c.addSent(23);
  c.addReceived(4096);
  let text = await m.exposition();
  t.equal(sample(text, 'istio_tcp_connections_opened_total', 'reporter="source"', 'destination_workload="server"'), 1);
  t.equal(sample(text, 'istio_tcp_sent_bytes_total', 'source_workload="client"'), 123, 'bytes visible while open');
  t.equal(sample(text, 'istio_tcp_received_bytes_total', 'connection_security_policy="mutual_tls"'), 4096);
  t.equal(sample(text, 'istio_tcp_connections_closed_total', 'reporter="source"'), undefined);
  t.equal(sample(text, 'rondo_agent_open_connections'), 1);
  c.addSent(7);
  c.close();
  c.close();
  c.addSent(1000); // after close: never reaches the counters
  text = await m.exposition();
  t.equal(sample(text, 'istio_tcp_sent_bytes_total', 'source_workload="client"'), 130, 'no double counting across flushes');
  t.equal(sample(text, 'istio_tcp_connections_closed_total', 'reporter="source"'), 1);
  t.equal(sample(text, 'rondo_agent_open_connections'), 0);
});

t.test('health metrics: config age and version, controller link, pools, refusals, audits (certificate expiry comes from CertManager)', async (t) => {
  let now = 1_000_000;
  const m = new AgentMetrics({ now: () => now });
  now += 5000;
  let text = await m.exposition();
  t.equal(sample(text, 'rondo_agent_config_age_seconds'), 5, 'counts from start-up before any config');
  m.configApplied(42);
  now += 2500;
  m.setPool('sessions', 3);
  m.setPool('streams', 17);
  m.refused('RONDO_E_POLICY_DENIED');
  m.refused('RONDO_E_SOURCE_NOT_ENROLLED');
  m.audited(['demo/audit-evil'], false);
  m.hboneRefused('bad_authority');
  m.hboneRefused('bad_authority');
  text = await m.exposition();
  t.equal(sample(text, 'rondo_agent_config_age_seconds'), 2.5);
  t.equal(sample(text, 'rondo_agent_config_version'), 42);
  t.equal(sample(text, 'rondo_agent_pool_connections', 'kind="streams"'), 17);
  t.equal(sample(text, 'rondo_agent_refused_connections_total', 'reason="policy_denied"'), 1);
  t.equal(sample(text, 'rondo_agent_refused_connections_total', 'reason="source_not_enrolled"'), 1);
  t.equal(sample(text, 'rondo_agent_policy_audit_total', 'policy="demo/audit-evil"', 'decision="deny"'), 1);
  t.equal(sample(text, 'rondo_agent_hbone_refused_total', 'reason="bad_authority"'), 2, 'HBONE refusals keep their reason');
});

const promtool = spawnSync('sh', ['-c', 'command -v promtool']).status === 0;
t.test('exposition passes promtool check metrics', { skip: !promtool && 'promtool not installed' }, async (t) => {
  const m = new AgentMetrics();
  const c = m.connection(tcpLabels({ reporter: 'destination', source: client, destination: server, mtls: true }));
  c.addReceived(10);
  c.close();
  m.configApplied(1);
  m.setPool('sessions', 1);
  m.refused('RONDO_E_INTERNAL');
  m.audited(['demo/a'], true);
  const r = spawnSync('promtool', ['check', 'metrics'], { input: await m.exposition(), encoding: 'utf8' });
  t.equal(r.status, 0, `promtool: ${r.stdout}${r.stderr}`);
});

t.test('with process metrics promtool passes too, with no output', { skip: !promtool && 'promtool not installed' }, async (t) => {
  const m = new AgentMetrics({ processMetrics: true });
  m.connection(tcpLabels({ reporter: 'source', source: client, mtls: false })).close();
  const r = spawnSync('promtool', ['check', 'metrics'], { input: await m.exposition(), encoding: 'utf8' });
  t.equal(r.status, 0);
  t.equal(`${r.stdout}${r.stderr}`.trim(), '');
});
