// The istio_tcp_* label sets one registry holds are bounded: past the bound, new sets are
// counted under collapsed (unknown) labels, and the collapse is itself counted.
import t from 'tap';
import { AgentMetrics, DEFAULT_MAX_TCP_LABEL_SETS } from '../../node-agent/metrics.ts';
import { tcpLabels } from '../../common/istio-labels.ts';
import type { TcpLabels } from '../../common/istio-labels.ts';

const labels = (i: number, mtls = true): TcpLabels => tcpLabels({
  reporter: 'destination', mtls,
  source: { namespace: 'demo', workloadName: `src-${i}` },
  sourcePrincipal: `spiffe://cluster.local/ns/demo/sa/src-${i}`,
  destination: { namespace: 'demo', workloadName: 'server', identity: 'spiffe://cluster.local/ns/demo/sa/server' },
});

const lines = (text: string, name: string): string[] => text.split('\n').filter((l) => l.startsWith(`${name}{`));
const value = (text: string, name: string): number | undefined => {
  const l = text.split('\n').find((x) => x.startsWith(`${name} `));
  return l === undefined ? undefined : Number(l.slice(name.length + 1));
};

t.test('the bound holds: sets past it are counted under unknown labels, and counted as collapsed', async (t) => {
  const m = new AgentMetrics({ maxTcpLabelSets: 3 });
  for (let i = 0; i < 10; i++) { const c = m.connection(labels(i)); c.addReceived(10); c.close(); }
  const plain = m.connection(labels(99, false));
  plain.close();
  const again = m.connection(labels(1));
  again.close();
  const text = await m.exposition();
  const opened = lines(text, 'istio_tcp_connections_opened_total');
  t.equal(opened.length, 5, '3 sets under the bound, one collapsed set per security policy');
  for (const i of [0, 1, 2]) t.ok(opened.some((l) => l.includes(`source_workload="src-${i}"`)), `set ${i} kept`);
  t.notOk(opened.some((l) => l.includes('source_workload="src-3"')), 'set 3 not added');
  t.match(opened.find((l) => l.includes('mutual_tls') && l.includes('source_workload="unknown"')),
    /\{reporter="destination",source_workload="unknown",source_workload_namespace="unknown",source_principal="unknown",destination_workload="unknown",destination_workload_namespace="unknown",destination_service="unknown",destination_principal="unknown",request_protocol="tcp",connection_security_policy="mutual_tls"\} 7$/);
  t.match(opened.find((l) => l.includes('connection_security_policy="none"')), /source_workload="unknown"[^}]*\} 1$/);
  t.match(opened.find((l) => l.includes('source_workload="src-1"')), /\} 2$/, 'a set already held keeps counting');
  t.equal(value(text, 'rondo_agent_tcp_label_sets_collapsed_total'), 8, 'every collapsed connection counted');
  t.equal(value(text, 'rondo_agent_tcp_label_sets'), 5);
  t.match(lines(text, 'istio_tcp_received_bytes_total').find((l) => l.includes('source_workload="unknown"')), /\} 70$/, 'bytes of collapsed connections still counted');
});

t.test('the default bound holds against a flood of distinct label sets', async (t) => {
  const m = new AgentMetrics();
  for (let i = 0; i < DEFAULT_MAX_TCP_LABEL_SETS + 1000; i++) m.connection(labels(i)).close();
  const text = await m.exposition();
  t.equal(lines(text, 'istio_tcp_connections_opened_total').length, DEFAULT_MAX_TCP_LABEL_SETS + 1);
  t.equal(value(text, 'rondo_agent_tcp_label_sets_collapsed_total'), 1000);
  t.equal(value(text, 'rondo_agent_tcp_label_sets'), DEFAULT_MAX_TCP_LABEL_SETS + 1);
  t.comment(`/metrics at the default bound: ${text.length} bytes`);
});

t.test('a bound that is not a whole number >= 0 is refused, naming the option', (t) => {
  t.throws(() => new AgentMetrics({ maxTcpLabelSets: -1 }), { code: 'RONDO_E_INVALID', message: /maxTcpLabelSets/ });
  t.throws(() => new AgentMetrics({ maxTcpLabelSets: 1.5 }), { code: 'RONDO_E_INVALID' });
  t.end();
});
