// Per-connection metric children are resolved once per label set: equal sets (new objects
// each connection) share one series, different sets never mix.
import t from 'tap';
import { AgentMetrics } from '../../node-agent/metrics.ts';
import { tcpLabels } from '../../common/istio-labels.ts';
import type { Workload } from '../../common/wire.ts';

const w = (name: string): Workload => ({
  uid: name, namespace: 'demo', name: `${name}-0`, workloadName: name, serviceAccount: name,
  identity: `spiffe://cluster.local/ns/demo/sa/${name}`, ips: ['10.244.1.5'], node: 'node-1', labels: {}, enrolled: true,
});

t.test('equal label sets share a series; a different set gets its own', async (t) => {
  const m = new AgentMetrics();
  for (let i = 0; i < 3; i++) {
    const c = m.connection(tcpLabels({ reporter: 'source', source: w('a'), destination: w('b'), mtls: true }));
    c.addSent(10);
    c.close();
  }
  const other = m.connection(tcpLabels({ reporter: 'source', source: w('a'), destination: w('c'), mtls: true }));
  other.addReceived(7);
  const text = await m.exposition();
  t.match(text, /istio_tcp_connections_opened_total\{[^}]*destination_workload="b"[^}]*\} 3/);
  t.match(text, /istio_tcp_connections_closed_total\{[^}]*destination_workload="b"[^}]*\} 3/);
  t.match(text, /istio_tcp_sent_bytes_total\{[^}]*destination_workload="b"[^}]*\} 30/);
  t.match(text, /istio_tcp_connections_opened_total\{[^}]*destination_workload="c"[^}]*\} 1/);
  t.match(text, /istio_tcp_received_bytes_total\{[^}]*destination_workload="c"[^}]*\} 7/, 'open connection bytes reach the counter at scrape');
  t.notMatch(text, /istio_tcp_connections_closed_total\{[^}]*destination_workload="c"/, 'still open');
});
