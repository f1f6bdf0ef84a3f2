import t from 'tap';
import type { Service, Workload } from '../../common/wire.ts';
import { REQUEST_LABEL_NAMES, TCP_LABEL_NAMES, requestLabels, tcpLabels } from '../../common/istio-labels.ts';

const TD = 'cluster.local';
const client: Workload = {
  uid: 'u1', namespace: 'demo', name: 'client-7d9f', workloadName: 'client', serviceAccount: 'client',
  identity: `spiffe://${TD}/ns/demo/sa/client`, ips: ['10.244.1.5'], node: 'node-1', labels: { app: 'client' }, enrolled: true,
};
const server: Workload = { ...client, uid: 'u2', name: 'server-x', workloadName: 'server', identity: `spiffe://${TD}/ns/demo/sa/server`, ips: ['10.244.2.7'] };
const svc: Service = { namespace: 'demo', name: 'server', hostname: 'server.demo.svc.cluster.local', vips: ['10.96.0.10'], ports: [], endpoints: [] };

t.test('Istio TCP labels for a mesh connection and for plaintext', (t) => {
  t.same(tcpLabels({ reporter: 'source', source: client, destination: server, service: svc, mtls: true }), {
    reporter: 'source', source_workload: 'client', source_workload_namespace: 'demo', source_principal: client.identity,
    destination_workload: 'server', destination_workload_namespace: 'demo', destination_service: 'server.demo.svc.cluster.local',
    destination_principal: server.identity, request_protocol: 'tcp', connection_security_policy: 'mutual_tls',
  });
  const plain = tcpLabels({ reporter: 'destination', destination: server, mtls: false });
  t.match(plain, { source_workload: 'unknown', source_principal: 'unknown', destination_principal: 'unknown', connection_security_policy: 'none' });
  t.end();
});

t.test('a remote source known only from baggage still labels its workload', (t) => {
  const l = tcpLabels({ reporter: 'destination', source: { namespace: 'demo', workloadName: 'client' }, sourcePrincipal: client.identity, destination: server, mtls: true });
  t.match(l, { source_workload: 'client', source_principal: client.identity, destination_principal: server.identity });
  t.end();
});

t.test('request labels: the TCP set plus the response, in Istio order', (t) => {
  t.same(REQUEST_LABEL_NAMES.slice(0, TCP_LABEL_NAMES.length), TCP_LABEL_NAMES);
  const ok = requestLabels({ reporter: 'destination', source: client, destination: server, service: svc, mtls: true, protocol: 'http', responseCode: 200 });
  t.same(Object.keys(ok).sort(), [...REQUEST_LABEL_NAMES].sort(), 'exactly the declared names');
  t.match(ok, { request_protocol: 'http', response_code: '200', grpc_response_status: '', response_flags: '-', destination_service: 'server.demo.svc.cluster.local' });
  const grpc = requestLabels({ reporter: 'source', source: client, destination: server, mtls: true, protocol: 'grpc', responseCode: 200, grpcStatus: 14 });
  t.match(grpc, { request_protocol: 'grpc', grpc_response_status: '14' });
  const refused = requestLabels({ reporter: 'source', source: client, service: svc, mtls: true, protocol: 'http', responseCode: 503, code: 'RONDO_E_NO_READY_ENDPOINTS' });
  t.match(refused, { response_code: '503', response_flags: 'no_ready_endpoints', destination_workload: 'unknown' }, 'the refusal code, not prose');
  t.end();
});
