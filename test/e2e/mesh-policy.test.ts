// Issue 4 §7 in a real lab: STRICT/PERMISSIVE for a client outside the mesh, and L4
// AuthorizationPolicies (DENY, ALLOW, AUDIT) applied and removed at run time.
import t from 'tap';
import { deploymentDoc, labDoc, labSpec, namespaceDoc, tcpEcho } from '../helpers/lab-specs.ts';
import { labSkipReason, withLab } from '../helpers/lab.ts';
import { agentAdmin, controllerDebug, sample, scrapeAgent, tcpSend, waitForConfig, waitUntil } from '../helpers/mesh.ts';

const skip = labSkipReason();
const dep = (namespace: string, name: string, node: string, port: number, serviceAccount = name): string =>
  deploymentDoc({ namespace, name, node, serviceAccount, command: tcpEcho(port) });
const spec = labSpec(
  labDoc(),
  namespaceDoc('demo', { ambient: true }),
  namespaceDoc('outside'),
  dep('demo', 'server', 'node-2', 9000), dep('demo', 'client-a', 'node-1', 9001), dep('demo', 'client-b', 'node-1', 9001),
  dep('demo', 'near-a', 'node-2', 9001, 'client-a'), dep('outside', 'stranger', 'node-1', 9002),
);

const policy = (name: string, action: string, rules: string): string => `apiVersion: security.rondo.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: ${name}, namespace: demo }
spec:
  selector: { matchLabels: { app: server } }
  action: ${action}
${rules}`;
const from = (sa: string): string => `  rules: [{ from: [{ source: { principals: ["cluster.local/ns/demo/sa/${sa}"] } }] }]\n`;
const permissive = `apiVersion: security.rondo.dev/v1alpha1
kind: PeerAuthentication
metadata: { name: open, namespace: demo }
spec: { mtls: { mode: PERMISSIVE } }
`;

t.test('mesh policies in a lab', { skip: skip ?? false, timeout: 180_000 }, async (t) => {
  const lab = await withLab(t, spec);
  await lab.waitForPort('demo/server', 9000, 20_000);
  const server = lab.podIp('demo/server');
  const reaches = async (from: string, msg: string): Promise<boolean> => (await tcpSend(lab, from, server, 9000, msg, 3000)).stdout === msg;
  await waitUntil('client-a -> server over the mesh', () => reaches('demo/client-a', 'warm-a'), 20_000, 250);
  await waitUntil('client-b -> server over the mesh', () => reaches('demo/client-b', 'warm-b'), 20_000, 250);
  await waitUntil('near-a -> server on the same node', () => reaches('demo/near-a', 'warm-near'), 20_000, 250);
  const refused = async (reason: string): Promise<number> => sample(await scrapeAgent(lab, 'node-2'), 'rondo_agent_refused_connections_total', `reason="${reason}"`);

  await t.test('a plain TCP client outside the mesh is refused under STRICT and accepted under PERMISSIVE', async (t) => {
    const before = await refused('plaintext_not_allowed');
    t.notOk(await reaches('outside/stranger', 'plain-1'), 'refused by default (STRICT)');
    t.equal(await refused('plaintext_not_allowed'), before + 1, 'counted as plaintext_not_allowed');

    t.same(lab.apply(permissive, 'pa.yaml').map((r) => r.outcome), ['created']);
    await waitForConfig(lab, ['node-2'], '"demo/open"');
    t.ok(await reaches('outside/stranger', 'plain-2'), 'accepted under PERMISSIVE');
    const m = await scrapeAgent(lab, 'node-2');
    t.ok(sample(m, 'istio_tcp_connections_opened_total', 'reporter="destination"', 'destination_workload="server"', 'connection_security_policy="none"') >= 1, 'labelled as plaintext (none)');
    t.ok(await reaches('demo/client-a', 'mtls-still'), 'mesh clients still work under PERMISSIVE');

    t.same(lab.delete(permissive, 'pa.yaml').map((r) => r.outcome), ['deleted']);
    await waitForConfig(lab, ['node-2'], '"demo/open"', false);
    t.notOk(await reaches('outside/stranger', 'plain-3'), 'refused again once the PeerAuthentication is gone');
  });

  await t.test('DENY blocks one service account and not another', async (t) => {
    const deny = policy('deny-a', 'DENY', from('client-a'));
    t.same(lab.apply(deny, 'deny.yaml').map((r) => r.outcome), ['created']);
    t.teardown(() => lab.delete(deny, 'deny.yaml'));
    await waitForConfig(lab, ['node-2'], '"demo/deny-a"');
    const before = await refused('policy_denied');
    t.notOk(await reaches('demo/client-a', 'denied'), 'client-a denied');
    t.notOk(await reaches('demo/near-a', 'denied-near'), 'client-a\'s service account on the server\'s own node denied too (same-node path)');
    t.ok(await reaches('demo/client-b', 'not-denied'), 'client-b still reaches the server');
    t.equal(await refused('policy_denied'), before + 2, 'each denial is counted once');
    lab.delete(deny, 'deny.yaml');
    await waitForConfig(lab, ['node-2'], '"demo/deny-a"', false);
    t.ok(await reaches('demo/client-a', 'allowed-again'), 'client-a reaches the server once the DENY is removed');
    t.ok(await reaches('demo/near-a', 'allowed-again-near'), 'and so does its same-node twin');
  });

  await t.test('ALLOW limits callers to the listed principals', async (t) => {
    const allow = policy('allow-b', 'ALLOW', from('client-b'));
    t.same(lab.apply(allow, 'allow.yaml').map((r) => r.outcome), ['created']);
    t.teardown(() => lab.delete(allow, 'allow.yaml'));
    await waitForConfig(lab, ['node-2'], '"demo/allow-b"');
    const before = await refused('policy_denied');
    t.ok(await reaches('demo/client-b', 'listed'), 'client-b (listed) allowed');
    t.notOk(await reaches('demo/client-a', 'unlisted'), 'client-a (not listed) refused');
    t.equal(await refused('policy_denied'), before + 1, 'the unlisted caller is counted as policy_denied');
    lab.delete(allow, 'allow.yaml');
    await waitForConfig(lab, ['node-2'], '"demo/allow-b"', false);
  });

  await t.test('AUDIT only records', async (t) => {
    const audit = policy('audit-a', 'AUDIT', from('client-a'));
    t.same(lab.apply(audit, 'audit.yaml').map((r) => r.outcome), ['created']);
    t.teardown(() => lab.delete(audit, 'audit.yaml'));
    await waitForConfig(lab, ['node-2'], '"demo/audit-a"');
    const count = async (): Promise<number> => sample(await scrapeAgent(lab, 'node-2'), 'rondo_agent_policy_audit_total', 'policy="demo/audit-a"', 'decision="allow"');
    const before = await count();
    t.ok(await reaches('demo/client-a', 'audited'), 'client-a still allowed');
    t.ok(await reaches('demo/client-b', 'not-audited'), 'client-b allowed');
    t.equal(await count(), before + 1, 'exactly the client-a connection was recorded by the AUDIT policy');
  });

  await t.test('a policy with an unknown field is rejected alone: named by the controller, the rest of the config still applies', async (t) => {
    const bad = policy('typo', 'DENY', from('client-b')).replace('  action: DENY\n', '  action: DENY\n  actoin: ALLOW\n');
    const good = policy('deny-b', 'DENY', from('client-b'));
    t.same(lab.apply(bad + '---\n' + good, 'mixed.yaml').map((r) => r.outcome), ['created', 'created']);
    t.teardown(() => lab.delete(bad + '---\n' + good, 'mixed.yaml'));
    await waitForConfig(lab, ['node-2'], '"demo/deny-b"');
    let invalid = '';
    await waitUntil('controller /debug/invalid to name demo/typo', async () => {
      invalid = await controllerDebug(lab, 'invalid');
      return invalid.includes('typo');
    }, 10_000, 250);
    t.match(invalid, /actoin/, `the reason names the unknown field: ${invalid.slice(0, 300)}`);
    t.notMatch(await agentConfig(), /"demo\/typo"/, 'the bad policy never reaches the agent');
    t.notOk(await reaches('demo/client-b', 'b-denied'), 'the good DENY next to it applies');
    t.ok(await reaches('demo/client-a', 'a-fine'), 'and nothing else changed');
    t.ok(lab.processPid('node-agent/node-2') !== undefined && lab.processPid('controller') !== undefined, 'agent and controller still run');
  });
  async function agentConfig(): Promise<string> { return agentAdmin(lab, 'node-2', '/config_dump'); }
});
