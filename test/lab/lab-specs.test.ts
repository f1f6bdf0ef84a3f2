import t from 'tap';
import { parseLabSpec } from '../../lab/spec.ts';
import { deploymentDoc, labDoc, labSpec, namespaceDoc, serviceDoc, tcpEcho } from '../helpers/lab-specs.ts';

t.test('the e2e spec builders produce a spec the lab accepts, with what was asked', (t) => {
  const spec = parseLabSpec(labSpec(
    labDoc({ meshOptions: { certTtlSeconds: 20 } }),
    namespaceDoc('demo', { ambient: true }),
    namespaceDoc('outside'),
    deploymentDoc({ namespace: 'demo', name: 'server', node: 'node-2', labels: { version: 'v1' }, command: tcpEcho(9000) }),
    serviceDoc({ namespace: 'demo', name: 'server', port: 80, targetPort: 9000 }),
    deploymentDoc({ namespace: 'outside', name: 'stranger', serviceAccount: null, command: tcpEcho(9002) }),
  ), 'builders.yaml');
  t.equal(spec.lab.nodes, 2);
  t.match(spec, { lab: { mesh: true } });
  t.same(spec.namespaces.filter((n) => ['demo', 'outside'].includes(n.name)).map((n) => [n.name, n.labels['rondo.dev/dataplane-mode'] ?? 'none']), [['demo', 'ambient'], ['outside', 'none']]);
  t.same(spec.lab.meshOptions, { certTtlSeconds: 20 });
  const server = spec.deployments.find((d) => d.name === 'server');
  t.match(server, { namespace: 'demo', nodeName: 'node-2', serviceAccount: 'server', podLabels: { app: 'server', version: 'v1' }, command: ['rondo-demo', 'tcp-echo', '--port', '9000'] });
  t.match(spec.services[0], { name: 'server', ports: [{ port: 80, targetPort: 9000 }] });
  t.end();
});
