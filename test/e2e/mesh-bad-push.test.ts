// A push the node agents cannot apply, in a real lab: the controller (with its test-only
// --debug-unchecked-trust-bundle-file hook) starts pushing a trust bundle with a garbage
// entry. The agents NACK it, keep their bundle, stay ready, keep carrying traffic, and keep
// applying later pushes (a DENY policy takes effect and is lifted while the bundle is bad).
import t from 'tap';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deploymentDoc, labDoc, labSpec, namespaceDoc, tcpEcho } from '../helpers/lab-specs.ts';
import { labSkipReason, withLab } from '../helpers/lab.ts';
import { agentAdmin, controllerDebug, sample, scratchDir, tcpSend, waitForConfig, waitUntil } from '../helpers/mesh.ts';

const skip = labSkipReason();
const spec = labSpec(
  labDoc(),
  namespaceDoc('demo', { ambient: true }),
  deploymentDoc({ namespace: 'demo', name: 'server', node: 'node-2', serviceAccount: 'server', command: tcpEcho(9000) }),
  deploymentDoc({ namespace: 'demo', name: 'client', node: 'node-1', serviceAccount: 'client', command: tcpEcho(9001) }),
);
const deny = `apiVersion: security.rondo.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: deny-client, namespace: demo }
spec:
  selector: { matchLabels: { app: server } }
  action: DENY
  rules: [{ from: [{ source: { principals: ["cluster.local/ns/demo/sa/client"] } }] }]
`;

interface Dump { rejected: { type: string; key: string; reason: string }[]; config: { mesh: { trustBundle: string[] } } }

t.test('agents survive a garbage trust bundle: NACK, keep serving, keep applying later pushes', { skip: skip ?? false, timeout: 180_000 }, async (t) => {
  const dir = scratchDir(t, 'rondo-e2e-badpush-');
  const extra = join(dir, 'unchecked-bundle-entry.pem');
  const saved = process.env['RONDO_CONTROLLER_ARGS'];
  process.env['RONDO_CONTROLLER_ARGS'] = `--debug-unchecked-trust-bundle-file ${extra}`;
  t.teardown(() => {
    if (saved === undefined) delete process.env['RONDO_CONTROLLER_ARGS'];
    else process.env['RONDO_CONTROLLER_ARGS'] = saved;
  });
  const lab = await withLab(t, spec);
  await lab.waitForPort('demo/server', 9000, 20_000);
  const server = lab.podIp('demo/server');
  const reaches = async (msg: string): Promise<boolean> => (await tcpSend(lab, 'demo/client', server, 9000, msg, 3000)).stdout === msg;
  await waitUntil('client -> server over the mesh', () => reaches('warm'), 20_000, 250);
  const nodes = ['node-1', 'node-2'];
  const dump = async (node: string): Promise<Dump> => JSON.parse(await agentAdmin(lab, node, '/config_dump')) as Dump;
  const goodBundle = (await dump('node-2')).config.mesh.trustBundle;
  t.equal(goodBundle.length, 1, 'one root before');
  const ctl = lab.plan.controller;
  const controllerMetrics = async (): Promise<string> =>
    (await lab.execNode('node-1', ['curl', '-s', '-m', '3', `http://${ctl.ip}:15014/metrics`], { allowFail: true, timeoutMs: 6000 })).stdout;
  const ready = async (node: string): Promise<number> => {
    const ip = lab.plan.nodes.find((n) => n.name === node)!.ip;
    const r = await lab.execNode(node, ['curl', '-s', '-m', '3', '-o', '/dev/null', '-w', '%{http_code}', `http://${ip}:15020/healthz/ready`], { allowFail: true, timeoutMs: 6000 });
    return Number(r.stdout);
  };

  writeFileSync(extra, 'garbage');
  // The controller re-reads its trust bundle every 5 s.
  await waitUntil('both agents to refuse the bundle', async () => {
    for (const n of nodes) if (!(await dump(n)).rejected.some((r) => r.type === 'mesh')) return false;
    return true;
  }, 30_000, 250);
  for (const n of nodes) {
    const d = await dump(n);
    t.match(d.rejected, [{ type: 'mesh', key: 'trustBundle', reason: /entry 1 is not a PEM certificate/ }], `${n} names what it refused`);
    t.same(d.config.mesh.trustBundle, goodBundle, `${n} keeps its trust bundle`);
    t.equal(await ready(n), 200, `${n} stays ready`);
  }
  t.ok(sample(await controllerMetrics(), 'rondo_controller_nacked_resources_total', 'type="mesh"') >= 2, 'the controller got both NACKs');
  t.ok(await reaches('still-flowing'), 'traffic still flows with the previous bundle');

  t.same(lab.apply(deny, 'deny.yaml').map((r) => r.outcome), ['created']);
  t.teardown(() => lab.delete(deny, 'deny.yaml'));
  await waitForConfig(lab, ['node-2'], '"demo/deny-client"');
  t.notOk(await reaches('denied'), 'a policy pushed while the bundle is bad takes effect');
  lab.delete(deny, 'deny.yaml');
  await waitForConfig(lab, ['node-2'], '"demo/deny-client"', false);
  t.ok(await reaches('allowed-again'), 'and so does its removal');

  // Back to the CA's bundle, which is what the agents hold: the controller knows, so it
  // sends nothing for it; the next change of any kind is then taken without refusal.
  const version = async (): Promise<number> => {
    const r = await controllerDebug(lab, 'version');
    return (JSON.parse(r || '{"version":0}') as { version: number }).version;
  };
  const before = await version();
  rmSync(extra);
  await waitUntil('the controller to drop the extra entry', async () => (await version()) > before, 30_000, 250);
  t.same(lab.apply(deny, 'deny.yaml').map((r) => r.outcome), ['created']);
  await waitForConfig(lab, nodes, '"demo/deny-client"');
  for (const n of nodes) t.same((await dump(n)).rejected, [], `${n} took the next push whole`);
  t.ok(lab.processPid('node-agent/node-1') !== undefined && lab.processPid('node-agent/node-2') !== undefined, 'no agent restarted or died');
});
