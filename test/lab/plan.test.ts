import t from 'tap';
import { readFileSync } from 'node:fs';
import { parseLabSpec } from '../../lab/spec.ts';
import { planLab, servicesRules, hostsFile } from '../../lab/plan.ts';

const demo = readFileSync(new URL('../../lab/specs/demo.yaml', import.meta.url), 'utf8');

t.test('the demo plan places pods and addresses as the contract says', (t) => {
  const p = planLab(parseLabSpec(demo, 'demo.yaml'));
  t.same(p.nodes.map((n) => [n.name, n.netns, n.ip, n.podCIDR]), [
    ['node-1', 'rondo-n1', '10.250.0.11', '10.244.1.0/24'],
    ['node-2', 'rondo-n2', '10.250.0.12', '10.244.2.0/24'],
  ]);
  t.equal(p.controller.ip, '10.250.0.2');
  t.equal(p.controller.netns, 'rondo-ctl');
  const byName = Object.fromEntries(p.pods.map((x) => [x.name, x]));
  t.equal(byName['backend-v1-0']?.node, 'node-1', 'nodeName is honoured');
  t.equal(byName['backend-v2-0']?.node, 'node-2');
  t.equal(byName['frontend-0']?.node, 'node-1', 'round robin starts at node-1');
  t.equal(byName['client-0']?.node, 'node-2', 'round robin continues');
  t.equal(byName['frontend-0']?.ip, '10.244.1.2');
  t.equal(byName['backend-v1-0']?.ip, '10.244.1.3');
  for (const x of p.pods) t.ok(x.netns.length <= 15 && x.hostVeth.length <= 15, 'names fit 15 chars');
  const backend = p.services.find((s) => s.name === 'backend');
  t.same(backend?.endpoints, ['demo/backend-v1-0', 'demo/backend-v2-0']);
  t.match(backend?.clusterIP, /^10\.96\.0\.\d+$/);
  t.end();
});

t.test('service rules spread over ready endpoints only', (t) => {
  const p = planLab(parseLabSpec(demo, 'demo.yaml'));
  const rules = servicesRules(p, () => true, true);
  t.match(rules, /-A PREROUTING -j LAB-SERVICES/);
  t.match(rules, /--probability 0\.50000 -j DNAT --to-destination 10\.244\.1\.3:8080/);
  t.match(rules, /"demo\/backend:80" -j DNAT --to-destination 10\.244\.2\.2:8080/);
  const one = servicesRules(p, (k) => k !== 'demo/backend-v1-0', false);
  t.notMatch(one, /10\.244\.1\.3/);
  t.notMatch(one, /PREROUTING/);
  t.end();
});

t.test('hosts file names services by FQDN, svc.ns and, in the same namespace, short name', (t) => {
  const p = planLab(parseLabSpec(demo, 'demo.yaml'));
  const vip = p.services.find((s) => s.name === 'backend')!.clusterIP;
  const fe = p.pods.find((x) => x.deployment === 'frontend')!;
  const cl = p.pods.find((x) => x.deployment === 'client')!;
  t.match(hostsFile(p, fe), `${vip} backend.demo.svc.cluster.local backend.demo.svc backend.demo backend\n`);
  t.match(hostsFile(p, cl), `${vip} backend.demo.svc.cluster.local backend.demo.svc backend.demo\n`);
  t.end();
});

t.test('clashing ranges and impossible placements are refused', (t) => {
  const lab = (s: string) => parseLabSpec(`apiVersion: lab.rondo.dev/v1\nkind: Lab\nspec:\n${s}`, 'l.yaml');
  t.throws(() => planLab(lab('  podCIDR: 10.96.0.0/12\n')), { message: /podCIDR 10\.96\.0\.0\/12 overlaps spec\.serviceCIDR/ });
  t.throws(() => planLab(lab('  underlayCIDR: 10.250.0.5/24\n')), { message: /host bits set/ });
  t.throws(() => planLab(lab('  podCIDR: 10.244.0.0/24\n')), { message: /too small/ });
  t.throws(() => planLab(lab('  nodes: 1\n'), ['10.250.0.7']), { message: /clashes with this machine's address 10\.250\.0\.7/ });
  t.end();
});
