// The production build (what a DaemonSet image runs) in a real lab: the compiled controller and
// agents start, an agent with a data-path worker process carries traffic over HBONE, and the
// worker is the compiled worker.js (the build once forked a worker.ts it does not have); the
// idle reclaimer runs in both the primary and the worker.
import t from 'tap';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { BUILD_DIR, buildMesh } from '../../bench/run.ts';
import { descendants, statParent } from '../../bench/procs.ts';
import { deploymentDoc, labDoc, labSpec, namespaceDoc, tcpEcho } from '../helpers/lab-specs.ts';
import { labSkipReason, withLab } from '../helpers/lab.ts';
import { sample, scrapeAgent, tcpSend, waitUntil } from '../helpers/mesh.ts';

const skip = labSkipReason();
const spec = labSpec(
  labDoc({}),
  namespaceDoc('demo', { ambient: true }),
  deploymentDoc({ namespace: 'demo', name: 'server', node: 'node-2', command: tcpEcho(9000) }),
  deploymentDoc({ namespace: 'demo', name: 'client', node: 'node-1', command: tcpEcho(9001) }),
);

function cmdline(pid: number): string {
  try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' '); } catch { return ''; }
}

function processTree(root: number): number[] {
  const parents = new Map<number, number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try { parents.set(Number(d), statParent(readFileSync(`/proc/${d}/stat`, 'utf8')).ppid); } catch { /* gone */ }
  }
  return descendants(root, parents);
}

t.test('the compiled mesh with a worker per agent carries traffic', { skip: skip ?? false, timeout: 180_000 }, async (t) => {
  const dir = buildMesh(() => undefined, `${BUILD_DIR}-e2e-${process.pid}`);
  const saved = { dist: process.env['RONDO_MESH_DIST'], args: process.env['RONDO_AGENT_ARGS'] };
  process.env['RONDO_MESH_DIST'] = dir;
  process.env['RONDO_AGENT_ARGS'] = '--workers 1 --idle-reclaim-s 2';
  t.teardown(() => {
    for (const [k, v] of [['RONDO_MESH_DIST', saved.dist], ['RONDO_AGENT_ARGS', saved.args]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    rmSync(dir, { recursive: true, force: true });
  });
  const lab = await withLab(t, spec);
  await lab.waitForPort('demo/server', 9000, 20_000);
  const server = lab.podIp('demo/server');

  const agentRoot = lab.processPid('node-agent/node-1');
  t.ok(agentRoot !== undefined, 'the agent on node-1 runs');
  const tree = processTree(agentRoot ?? 0).map(cmdline);
  t.ok(tree.some((c) => c.includes(`${dir}/node-agent/main.js`)), 'the agent runs the compiled main.js');
  await waitUntil('the data-path worker', () => processTree(agentRoot ?? 0).map(cmdline).some((c) => c.includes(`${dir}/node-agent/worker.js`)), 15_000);
  t.match(processTree(lab.processPid('controller') ?? 0).map(cmdline).join('\n'), `${dir}/controller/main.js`, 'the controller runs the compiled main.js');

  await waitUntil('client -> server over the mesh', async () => (await tcpSend(lab, 'demo/client', server, 9000, 'warm', 3000)).stdout === 'warm', 30_000, 250);
  const r = await tcpSend(lab, 'demo/client', server, 9000, 'hello from the build');
  t.equal(r.stdout, 'hello from the build', 'the echo comes back through both agents');
  await waitUntil('the worker counted it', async () =>
    sample(await scrapeAgent(lab, 'node-1'), 'istio_tcp_connections_opened_total', 'reporter="source"', 'connection_security_policy="mutual_tls"') >= 2, 10_000);

  // Both processes hand their start-up garbage back once quiet (2 s here instead of 30).
  const log = join(lab.runDir, 'logs', 'agent-node-1.log');
  const reclaims = (): string[] => readFileSync(log, 'utf8').split('\n').filter((l) => l.includes('idle: returned memory'));
  await waitUntil('an idle reclaim in the primary and in the worker', () => {
    const lines = reclaims();
    return lines.some((l) => l.includes('"component":"node-agent"')) && lines.some((l) => l.includes('"component":"node-agent.worker-'));
  }, 20_000, 500);
  t.match(reclaims()[0] ?? '', /"rssAfterMB":\d/, 'it logs what it returned');
});
