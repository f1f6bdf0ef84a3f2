// Taking the mesh off a node, in a real lab: an agent started with --cleanup-on-exit removes
// its capture rules when stopped; `rondo lab uninstall-node` stops an agent and runs
// `node-agent/main.ts --uninstall`, which removes every RONDO-* chain, jump and rondo-* set.
// Before, a STRICT pod refuses a plaintext caller; after, it is reached as without a mesh.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { deploymentDoc, labDoc, labSpec, namespaceDoc, tcpEcho } from '../helpers/lab-specs.ts';
import { labSkipReason, withLab } from '../helpers/lab.ts';
import { tcpSend, waitUntil } from '../helpers/mesh.ts';
import { REPO_ROOT } from '../../lab/lab.ts';
import type { Lab } from '../../lab/lab.ts';

const skip = labSkipReason();
const spec = labSpec(
  labDoc(),
  namespaceDoc('demo', { ambient: true }),
  namespaceDoc('plain'),
  deploymentDoc({ namespace: 'demo', name: 'server', node: 'node-2', serviceAccount: 'server', command: tcpEcho(9000) }),
  deploymentDoc({ namespace: 'demo', name: 'client', node: 'node-1', serviceAccount: 'client', command: tcpEcho(9001) }),
  deploymentDoc({ namespace: 'plain', name: 'outside', node: 'node-1', serviceAccount: 'outside', command: tcpEcho(9002) }),
);

async function captureState(lab: Lab, node: string): Promise<{ chains: string[]; sets: string[]; loop: string[] }> {
  const save = await lab.execNode(node, ['sh', '-c', 'iptables-save -t nat; iptables-save -t filter'], { timeoutMs: 10_000 });
  const sets = await lab.execNode(node, ['ipset', 'list', '-n'], { timeoutMs: 10_000 });
  // The service-VIP loop (veth pair and policy-routing rules) counts as capture too.
  const loop = await lab.execNode(node, ['sh', '-c', 'ip -o link show; ip -4 rule show'], { timeoutMs: 10_000 });
  return {
    chains: save.stdout.split('\n').filter((l) => /RONDO-/.test(l)),
    sets: sets.stdout.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('rondo-')),
    loop: loop.stdout.split('\n').filter((l) => /rondo-in|^1500[0-3]:/.test(l)),
  };
}

t.test('capture removal: --cleanup-on-exit on stop, and rondo lab uninstall-node', { skip: skip ?? false, timeout: 180_000 }, async (t) => {
  const lab = await withLab(t, spec);
  await lab.waitForPort('demo/server', 9000, 20_000);
  const server = lab.podIp('demo/server');
  const reaches = async (from: string, msg: string): Promise<boolean> => (await tcpSend(lab, from, server, 9000, msg, 3000)).stdout === msg;
  await waitUntil('client -> server over the mesh', () => reaches('demo/client', 'warm'), 20_000, 250);
  t.notOk(await reaches('plain/outside', 'plaintext'), 'STRICT: a plaintext caller is refused while the mesh captures');
  for (const n of ['node-1', 'node-2']) {
    const s = await captureState(lab, n);
    t.ok(s.chains.length > 0 && s.sets.includes('rondo-enrolled') && s.loop.length > 0, `${n} has capture rules, the set and the loop`);
  }

  // node-1: restarted with --cleanup-on-exit, then stopped.
  const saved = process.env['RONDO_AGENT_ARGS'];
  process.env['RONDO_AGENT_ARGS'] = '--cleanup-on-exit';
  t.teardown(() => { if (saved === undefined) delete process.env['RONDO_AGENT_ARGS']; else process.env['RONDO_AGENT_ARGS'] = saved; });
  await lab.restartMeshProcess('node-agent/node-1');
  t.ok((await captureState(lab, 'node-1')).chains.length > 0, 'node-1: the restarted agent keeps capturing');
  await lab.stopMeshProcess('node-agent/node-1');
  t.same(await captureState(lab, 'node-1'), { chains: [], sets: [], loop: [] }, 'node-1: stopping the agent removed every RONDO-* rule, rondo-* set and the loop');

  // node-2: the CLI verb, an agent without the flag.
  const cli = (): ReturnType<typeof spawnSync> => spawnSync(process.execPath, [join(REPO_ROOT, 'cli', 'rondo.ts'), 'lab', 'uninstall-node', '--name', lab.name, 'node-2'], { encoding: 'utf8', timeout: 60_000 });
  const r = cli();
  t.equal(r.status, 0, `rondo lab uninstall-node exits 0 (${String(r.stderr)})`);
  t.match(String(r.stdout), /node-2: agent stopped, capture rules and sets removed/);
  t.equal(lab.processPid('node-agent/node-2'), undefined, 'node-2: the agent is stopped');
  t.same(await captureState(lab, 'node-2'), { chains: [], sets: [], loop: [] }, 'node-2: every RONDO-* rule, rondo-* set and the loop removed');
  t.ok(await reaches('plain/outside', 'plaintext-now'), 'the pod is reached in plaintext, as without a mesh');
  t.equal(cli().status, 0, 'uninstalling again is harmless');
  const bad = spawnSync(process.execPath, [join(REPO_ROOT, 'cli', 'rondo.ts'), 'lab', 'uninstall-node', '--name', lab.name, 'node-9'], { encoding: 'utf8', timeout: 60_000 });
  t.equal(bad.status, 1);
  t.match(bad.stderr, /no node "node-9".*known: node-1, node-2/);
});
