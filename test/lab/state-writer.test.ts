import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { parseLabSpec } from '../../lab/spec.ts';
import { planLab, keyOf } from '../../lab/plan.ts';
import { StateWriter, stateFileName } from '../../lab/state-writer.ts';

const demo = readFileSync(new URL('../../lab/specs/demo.yaml', import.meta.url), 'utf8');

t.test('the state dir holds what an API server would show', (t) => {
  const plan = planLab(parseLabSpec(demo, 'demo.yaml'));
  const w = new StateWriter(join(t.testdir(), 'state'));
  const uids = new Map(plan.pods.map((p, i) => [keyOf(p), `uid-${i}`]));
  w.writeAll(plan, uids, (k) => k !== 'demo/backend-v2-0');
  t.same(w.list(), [
    'endpointslice.demo.backend-lab.yaml', 'endpointslice.demo.frontend-lab.yaml', 'namespace.default.yaml', 'namespace.demo.yaml', 'namespace.outside.yaml',
    'node.node-1.yaml', 'node.node-2.yaml', 'pod.demo.backend-v1-0.yaml', 'pod.demo.backend-v2-0.yaml', 'pod.demo.frontend-0.yaml', 'pod.outside.client-0.yaml',
    'service.demo.backend.yaml', 'service.demo.frontend.yaml',
  ]);
  const read = (f: string) => parse(readFileSync(join(w.dir, f), 'utf8')) as Record<string, never>;
  t.match(read('namespace.demo.yaml'), { metadata: { name: 'demo', labels: { 'rondo.dev/dataplane-mode': 'ambient' } } });
  t.match(read('pod.demo.backend-v1-0.yaml'), {
    kind: 'Pod', metadata: { uid: 'uid-1', labels: { app: 'backend', version: 'v1' } },
    spec: { nodeName: 'node-1', serviceAccountName: 'backend' }, status: { podIP: '10.244.1.3', phase: 'Running' },
  });
  t.match(read('pod.demo.backend-v2-0.yaml'), { status: { phase: 'Failed' } });
  t.match(read('service.demo.backend.yaml'), { spec: { clusterIP: plan.services[1]!.clusterIP, ports: [{ port: 80, targetPort: 8080 }] } });
  t.match(read('endpointslice.demo.backend-lab.yaml'), {
    metadata: { labels: { 'kubernetes.io/service-name': 'backend' } }, ports: [{ port: 8080 }],
    endpoints: [{ addresses: ['10.244.1.3'], conditions: { ready: true }, nodeName: 'node-1', targetRef: { name: 'backend-v1-0', uid: 'uid-1' } },
      { addresses: ['10.244.2.2'], conditions: { ready: false } }],
  });
  t.match(read('node.node-2.yaml'), { spec: { podCIDR: '10.244.2.0/24' }, status: { addresses: [{ type: 'InternalIP', address: '10.250.0.12' }] } });
  t.ok(w.remove('Service', 'demo', 'backend'));
  t.notOk(w.remove('Service', 'demo', 'backend'));
  t.end();
});

t.test('file names: namespaced and cluster-scoped', (t) => {
  t.equal(stateFileName('AuthorizationPolicy', 'demo', 'deny'), 'authorizationpolicy.demo.deny.yaml');
  t.equal(stateFileName('Node', undefined, 'node-1'), 'node.node-1.yaml');
  t.end();
});
