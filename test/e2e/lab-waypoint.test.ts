// A Gateway of class rondo-waypoint in a real lab (controller and node agents): `rondo lab
// apply` starts its waypoint pod as the Kubernetes reconciler will, the agents learn its
// address, and `rondo lab delete` stops it and removes everything made for it. The first
// test runs a stand-in waypoint with the contract's command line (the lab's part alone);
// the second the real waypoint/main.ts.
import t from 'tap';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { parse } from 'yaml';
import { Lab, REPO_ROOT } from '../../lab/lab.ts';
import { parseLabSpec } from '../../lab/spec.ts';
import { deploymentDoc, labDoc, labSpec, namespaceDoc, tcpEcho } from '../helpers/lab-specs.ts';
import { labSkipReason, uniqueLabName, withLab } from '../helpers/lab.ts';
import { agentAdmin, waitForConfig, waitUntil } from '../helpers/mesh.ts';

const skip = labSkipReason();
const spec = labSpec(labDoc(), namespaceDoc('demo', { ambient: true }),
  deploymentDoc({ namespace: 'demo', name: 'server', node: 'node-1', command: tcpEcho(9000) }),
  deploymentDoc({ namespace: 'demo', name: 'client', node: 'node-1', command: tcpEcho(9001) }));
const gateway = (cls = 'rondo-waypoint'): string => `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: wp, namespace: demo }
spec:
  gatewayClassName: ${cls}
  listeners: [{ name: mesh, port: 15008, protocol: HBONE }]
`;

// The contract's command line; ready only when its token maps to its own identity.
const standIn = `
import http from 'node:http'; import fs from 'node:fs'; import path from 'node:path';
const arg = (k: string): string => process.argv[process.argv.indexOf(k) + 1] ?? '';
const tokenFile = arg('--token-file');
const token = fs.readFileSync(tokenFile, 'utf8').trim();
const tokens = JSON.parse(fs.readFileSync(path.join(path.dirname(path.dirname(tokenFile)), 'tokens.json'), 'utf8'));
const id = tokens[token];
const ok = id?.kind === 'waypoint' && id.namespace === arg('--namespace') && id.name === arg('--name') && fs.existsSync(arg('--ca-file'))
  && arg('--controller').endsWith(':15012') && process.env.POD_NAMESPACE === 'demo' && process.env.SERVICE_ACCOUNT === 'wp';
if (!ok) { console.error('bad command line or token', process.argv, id); process.exit(3); }
http.createServer((q, r) => { r.statusCode = q.url === '/healthz/ready' ? 200 : 404; r.end(); }).listen(15020, '0.0.0.0');
process.on('SIGTERM', () => process.exit(0));
`;

const netnsList = (): string[] => spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').map((l) => l.split(' ')[0] ?? '');
const statePhase = (lab: Lab, podName: string): string | undefined => {
  const f = join(lab.stateDir, `pod.demo.${podName}.yaml`);
  return existsSync(f) ? (parse(readFileSync(f, 'utf8')) as { status: { phase: string } }).status.phase : undefined;
};

/** Everything a waypoint leaves while it exists; all empty once it is removed. */
function traces(lab: Lab, w: { netns: string; hostVeth: string; node: string; podName: string }): Record<string, unknown> {
  const nodeNetns = lab.plan.nodes.find((n) => n.name === w.node)!.netns;
  const record = JSON.parse(readFileSync(join(lab.runDir, 'record.json'), 'utf8')) as { entries: { kind: string; name?: string; path?: string }[] };
  const tokens = JSON.parse(readFileSync(join(lab.runDir, 'tokens.json'), 'utf8')) as Record<string, { kind: string }>;
  return {
    netns: netnsList().filter((n) => n === w.netns),
    veth: spawnSync('ip', ['-n', nodeNetns, '-o', 'link', 'show', w.hostVeth], { encoding: 'utf8' }).stdout.trim() === '' ? [] : [w.hostVeth],
    etcNetns: existsSync(`/etc/netns/${w.netns}`) ? [w.netns] : [],
    state: readdirSync(lab.stateDir).filter((f) => f === `pod.demo.${w.podName}.yaml` || f === 'service.demo.wp.yaml' || f === 'endpointslice.demo.wp-lab.yaml'),
    token: existsSync(join(lab.runDir, 'tokens', 'waypoint.demo.wp.token')) ? ['token file'] : [],
    tokensJson: Object.values(tokens).filter((v) => v.kind === 'waypoint'),
    record: record.entries.filter((e) => e.name === w.netns || e.name === w.hostVeth || e.name === 'waypoint/demo/wp' || e.path === `/etc/netns/${w.netns}`),
    processes: readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
      try { return readFileSync(`/proc/${p}/environ`, 'utf8').split('\0').includes(`POD_NAME=${w.podName}`); } catch { return false; }
    }),
  };
}

t.test('lab: a rondo-waypoint Gateway starts a waypoint pod, delete removes all of it (stand-in waypoint)', { skip: skip ?? false, timeout: 180_000 }, async (t) => {
  // One fixture dir per test: a second t.testdir() would replace the first.
  const dir = t.testdir({ good: { waypoint: { 'main.ts': standIn } }, never: { waypoint: { 'main.ts': 'setInterval(() => {}, 1000);' } } });
  const repo = join(dir, 'good');
  const never = join(dir, 'never');
  const lab = await withLab(t, spec);

  t.match(lab.apply(gateway(), 'gw.yaml'), [{ outcome: 'rejected', message: /gw\.yaml:\d+: Gateway demo\/wp: spec\.gatewayClassName: a rondo-waypoint Gateway starts or stops a waypoint pod: apply it with `rondo lab apply`/ }],
    'the synchronous apply refuses it (it cannot wait for the pod)');
  t.match(await lab.applyAsync(gateway('other-class'), 'other.yaml', { repo }), [{ resource: 'gateway/demo/wp', outcome: 'created' }]);
  t.same(lab.waypoints(), [], 'a Gateway of another class is only stored');
  t.match(await lab.applyAsync(gateway(), 'gw.yaml', { repo }), [{ resource: 'gateway/demo/wp', outcome: 'configured', message: /^waypoint pod wp-[0-9a-f]{9}-[0-9a-f]{5} on node-2 \(10\.244\.2\.2\) started, ready$/ }],
    'node-2 runs no pod: the waypoint goes there');
  const [w] = lab.waypoints();
  if (w === undefined) return;
  const names = { netns: w.pod.netns, hostVeth: w.pod.hostVeth, node: w.pod.node, podName: w.pod.name };
  t.match(w, { namespace: 'demo', gateway: 'wp', phase: 'Running', pod: { netns: `${lab.name}-w1`, hostVeth: 'vw1', serviceAccount: 'wp' } });
  t.equal(statePhase(lab, w.pod.name), 'Running');
  t.match(parse(readFileSync(join(lab.stateDir, 'endpointslice.demo.wp-lab.yaml'), 'utf8')), { endpoints: [{ addresses: [w.pod.ip], conditions: { ready: true } }] });
  const pid = lab.processPid('waypoint/demo/wp');
  t.ok(pid !== undefined, 'the process is recorded and running');
  t.ok(spawnSync('ip', ['netns', 'pids', w.pod.netns], { encoding: 'utf8' }).stdout.split('\n').length > 1, 'it runs in the pod netns');
  const r = await lab.execNode('node-1', ['curl', '-s', '-m', '2', '-o', '/dev/null', '-w', '%{http_code}', `http://${w.pod.ip}:15020/healthz/ready`], { allowFail: true });
  t.equal(r.stdout, '200', 'the waypoint pod is routed like any pod (from the other node)');
  const st = await lab.status();
  t.match(st.waypoints, [{ namespace: 'demo', gateway: 'wp', pod: w.pod.name, node: 'node-2', ip: w.pod.ip, phase: 'Running', state: 'running', log: join(lab.runDir, 'logs', 'waypoint.demo.wp.log') }]);
  t.notOk(st.mesh.some((m) => m.role === 'waypoint'), 'listed as a waypoint, not among the node proxies');
  t.equal(lab.pod('wp').ip, w.pod.ip, '`rondo lab exec wp` finds the waypoint pod');

  await waitForConfig(lab, ['node-1', 'node-2'], `"demo/wp"`);
  // The Pod turns Running (endpoint ready) after the Service appeared: a later push.
  await waitUntil('the waypoint endpoint ready at the agents', async () => {
    const d = JSON.parse(await agentAdmin(lab, 'node-1', '/config_dump')) as { config: { services: Record<string, { endpoints: { ready: boolean }[] }> } };
    return d.config.services['demo/wp']?.endpoints[0]?.ready === true;
  }, 15_000, 200);
  const dump = JSON.parse(await agentAdmin(lab, 'node-1', '/config_dump')) as { config: { services: Record<string, { endpoints: unknown[] }>; workloads: Record<string, unknown> } };
  t.same(dump.config.services['demo/wp']?.endpoints, [{ workloadUid: w.uid, ip: w.pod.ip, ready: true }], 'the agents know the waypoint\'s address');
  t.match(dump.config.workloads[w.uid], { workloadName: 'wp', identity: 'spiffe://cluster.local/ns/demo/sa/wp', enrolled: false });

  t.match(await lab.applyAsync(gateway(), 'gw.yaml', { repo }), [{ outcome: 'unchanged', message: /running, ready/ }], 're-applying is unchanged');
  t.equal(lab.waypoints().length, 1, 'no second pod');
  t.equal(lab.processPid('waypoint/demo/wp'), pid, 'the same process');

  await lab.stopMeshProcess('waypoint/demo/wp', { graceMs: 2000 });
  await waitUntil('the watcher to mark the crashed waypoint Failed', () => statePhase(lab, w.pod.name) === 'Failed', 10_000);
  t.equal(lab.waypoints()[0]?.phase, 'Failed');
  await waitUntil('agents to see the endpoint not ready', async () => (await agentAdmin(lab, 'node-1', '/config_dump')).includes('"ready": false'), 15_000);
  t.match(await lab.applyAsync(gateway(), 'gw.yaml', { repo }), [{ outcome: 'unchanged', message: /restarted, ready/ }], 're-applying restarts an exited waypoint');
  t.equal(statePhase(lab, w.pod.name), 'Running');
  t.not(lab.processPid('waypoint/demo/wp'), undefined);

  t.match(lab.delete(gateway(), 'gw.yaml'), [{ outcome: 'rejected', message: /has a waypoint pod/ }], 'the synchronous delete refuses it');
  t.match(await lab.deleteAsync(gateway(), 'gw.yaml', { repo }), [{ resource: 'gateway/demo/wp', outcome: 'deleted', message: `waypoint pod ${w.pod.name} stopped and removed` }]);
  t.same(traces(lab, names), { netns: [], veth: [], etcNetns: [], state: [], token: [], tokensJson: [], record: [], processes: [] }, 'nothing of the waypoint is left');
  t.same(lab.waypoints(), []);
  t.notOk(existsSync(join(lab.stateDir, 'gateway.demo.wp.yaml')));
  await waitForConfig(lab, ['node-1', 'node-2'], `"demo/wp"`, false);

  // A waypoint that never gets ready: removed again, and the new Gateway not stored.
  t.match(await lab.applyAsync(gateway(), 'gw.yaml', { repo: never, timeoutMs: 1500 }),
    [{ outcome: 'rejected', message: /waypoint demo\/wp .*not ready after 1\.5s; see .*logs\/waypoint\.demo\.wp\.log/ }]);
  t.notOk(existsSync(join(lab.stateDir, 'gateway.demo.wp.yaml')), 'the Gateway is not stored without its waypoint');
  t.same(traces(lab, names), { netns: [], veth: [], etcNetns: [], state: [], token: [], tokensJson: [], record: [], processes: [] }, 'and nothing of it is left');

  // One left running is removed by `down` (its netns, veth and process are in the record).
  t.match(await lab.applyAsync(gateway(), 'gw.yaml', { repo }), [{ outcome: 'created' }]);
  t.equal(lab.waypoints().length, 1);
});

t.test('lab: a waypoint Gateway in the spec is up with the lab, and down removes it', { skip: skip ?? false, timeout: 120_000 }, async (t) => {
  const repo = t.testdir({ waypoint: { 'main.ts': standIn } });
  const s = parseLabSpec(labSpec(spec, gateway().replace('metadata: { name: wp, namespace: demo }', 'metadata: { name: wp, namespace: demo, annotations: { lab.rondo.dev/node: node-1 } }')), 'spec.yaml');
  s.lab.name = uniqueLabName();
  t.teardown(() => Lab.down(s.lab.name).catch(() => undefined));
  const lab = await Lab.up(s, { waypointRepo: repo, ownerPid: process.pid });
  const [w] = lab.waypoints();
  t.match(w, { phase: 'Running', pod: { node: 'node-1', ip: '10.244.1.4' } }, 'pinned by the annotation, after the two planned pods');
  t.equal(lab.waypoints().length, 1);
  t.ok(lab.processPid('waypoint/demo/wp') !== undefined);
  await Lab.down(s.lab.name);
  const left = {
    netns: netnsList().filter((n) => n.startsWith(`${s.lab.name}-`)),
    processes: readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
      try { return readFileSync(`/proc/${p}/environ`, 'utf8').split('\0').includes(`RONDO_LAB=${s.lab.name}`); } catch { return false; }
    }),
    etcNetns: existsSync('/etc/netns') ? readdirSync('/etc/netns').filter((n) => n.startsWith(`${s.lab.name}-`)) : [],
  };
  t.same(left, { netns: [], processes: [], etcNetns: [] }, 'down took the waypoint with the lab');
});

const realEntry = join(REPO_ROOT, 'waypoint', 'main.ts');
const realSkip = skip ?? (existsSync(realEntry) ? false : `${realEntry} does not exist yet`);

t.test('lab: the real waypoint starts, authenticates with a token added after the controller started, and goes with delete', { skip: realSkip, timeout: 180_000 }, async (t) => {
  const lab = await withLab(t, spec);
  const applied = await lab.applyAsync(gateway(), 'gw.yaml', { timeoutMs: 60_000 });
  t.match(applied, [{ outcome: 'created', message: /started, ready$/ }], 'ready: it has a config and its own certificate from the controller');
  const [w] = lab.waypoints();
  if (w === undefined) return;
  const names = { netns: w.pod.netns, hostVeth: w.pod.hostVeth, node: w.pod.node, podName: w.pod.name };
  const st = await lab.status();
  t.match(JSON.stringify(st.proxies), /"proxy":"waypoint\/demo\/wp"/, 'the controller lists the waypoint among its proxies');
  await waitForConfig(lab, ['node-1', 'node-2'], `"ip": "${w.pod.ip}"`);
  t.match(await lab.applyAsync(gateway(), 'gw.yaml'), [{ outcome: 'unchanged' }]);
  t.match(await lab.deleteAsync(gateway(), 'gw.yaml'), [{ outcome: 'deleted' }]);
  t.same(traces(lab, names), { netns: [], veth: [], etcNetns: [], state: [], token: [], tokensJson: [], record: [], processes: [] }, 'nothing of the waypoint is left');
  await waitForConfig(lab, ['node-1', 'node-2'], `"ip": "${w.pod.ip}"`, false);
  await waitUntil('the controller to drop the waypoint', async () => !JSON.stringify((await lab.status()).proxies).includes('waypoint/demo/wp'), 15_000);
});
