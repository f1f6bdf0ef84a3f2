import t from 'tap';
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { parse } from 'yaml';
import { Lab } from '../../lab/lab.ts';
import { parseLabSpec } from '../../lab/spec.ts';
import { withLab, labSkipReason, uniqueLabName } from '../helpers/lab.ts';

const skip = labSkipReason();
if (skip !== undefined) {
  t.test('lab end-to-end tests', { skip: skip }, () => undefined);
} else {
  const echo = "require('net').createServer((s)=>s.pipe(s)).listen(8080)";
  const web = "require('http').createServer((q,r)=>r.end('hello from '+process.env.POD_NAME+' on '+process.env.NODE_NAME+'\\n')).listen(8080)";
  const dep = (name: string, ns: string, replicas: number, argv: string[], extra = '') => `---
apiVersion: apps/v1
kind: Deployment
metadata: { name: ${name}, namespace: ${ns} }
spec:
  replicas: ${replicas}
  template:
    metadata: { labels: { app: ${name} } }
    spec:
${extra}      containers:
        - name: main
          command: ${JSON.stringify(argv)}
`;
  const spec = `apiVersion: lab.rondo.dev/v1
kind: Lab
spec: { nodes: 2 }
---
apiVersion: v1
kind: Namespace
metadata: { name: demo, labels: { rondo.dev/dataplane-mode: ambient } }
---
apiVersion: v1
kind: Namespace
metadata: { name: outside }
${dep('echo', 'demo', 2, ['node', '-e', echo])}${dep('web', 'demo', 1, ['node', '-e', web])}${dep('client', 'outside', 1, ['sleep', 'infinity'])}${dep('crasher', 'outside', 1, ['sh', '-c', 'echo going down; exit 3'], '      nodeName: node-2\n')}---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: demo }
spec:
  selector: { app: web }
  ports: [{ port: 80, targetPort: 8080 }]
`;

  /** What the lab could leave behind, seen from the root namespace. */
  const snapshot = (name: string) => ({
    netns: spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l.startsWith(`${name}-`)),
    rootLinks: spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).stdout.split('\n').map((l) => l.split(':')[1]?.trim()).filter(Boolean).sort(),
    etcNetns: existsSync('/etc/netns') ? readdirSync('/etc/netns').filter((n) => n.startsWith(`${name}-`)) : [],
    processes: readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
      try { return readFileSync(`/proc/${p}/environ`, 'utf8').split('\0').includes(`RONDO_LAB=${name}`); } catch { return false; }
    }),
    runDir: existsSync(`/run/rondo/${name}`),
  });

  t.test('a 2-node lab: pods, cross-node traffic, services by VIP and name, state dir, status, down', async (t) => {
    const name = uniqueLabName();
    const before = snapshot(name);
    const lab = await withLab(t, spec, { name });
    t.equal(lab.plan.nodes.length, 2);
    const running = lab.plan.pods.filter((p) => p.deployment !== 'crasher');
    t.equal(running.length, 4, '4 long-running pods');
    t.same(new Set(running.map((p) => p.node)), new Set(['node-1', 'node-2']), 'pods spread over both nodes');
    await lab.waitForPort('echo-0', 8080);
    await lab.waitForPort('echo-1', 8080);
    await lab.waitForPort('web-0', 8080);

    const client = lab.pod('client-0');
    const far = lab.plan.pods.find((p) => p.deployment === 'echo' && p.node !== client.node)!;
    t.not(far.node, client.node);
    const tcp = await lab.exec('client', ['node', '-e', `const s=require('net').connect(8080,'${far.ip}',()=>s.end('ping across nodes'));s.pipe(process.stdout)`]);
    t.equal(tcp.stdout, 'ping across nodes', 'TCP echo pod -> pod across nodes');

    const webPod = lab.pod('web-0');
    const httpFar = lab.plan.pods.find((p) => p.node !== webPod.node && p.deployment !== 'crasher')!;
    const http = await lab.exec(httpFar.name, ['curl', '-s', '-m', '3', `http://${webPod.ip}:8080/`]);
    t.equal(http.stdout, `hello from web-0 on ${webPod.node}\n`, 'HTTP pod -> pod across nodes');

    const vip = lab.serviceIp('demo/web');
    t.match(vip, /^10\.96\./);
    t.equal((await lab.exec('client', ['curl', '-s', '-m', '3', `http://${vip}/`])).stdout, `hello from web-0 on ${webPod.node}\n`, 'non-mesh pod reaches a Service by VIP');
    t.equal((await lab.exec('client', ['curl', '-s', '-m', '3', 'http://web.demo.svc.cluster.local/'])).stdout.startsWith('hello from web-0'), true, 'by FQDN');
    t.equal((await lab.exec('client', ['curl', '-s', '-m', '3', 'http://web.demo/'])).stdout.startsWith('hello from web-0'), true, 'by <svc>.<ns>');
    t.equal((await lab.exec('echo-1', ['curl', '-s', '-m', '3', 'http://web/'])).stdout.startsWith('hello from web-0'), true, 'by short name in the same namespace');
    const outsideShort = await lab.exec('client', ['curl', '-s', '-m', '2', 'http://web/'], { allowFail: true });
    t.not(outsideShort.code, 0, 'the short name does not resolve from another namespace');

    const pods = readdirSync(lab.stateDir).filter((f) => f.startsWith('pod.')).map((f) => parse(readFileSync(join(lab.stateDir, f), 'utf8')) as { metadata: { name: string; uid: string }; spec: { nodeName: string }; status: { podIP: string } });
    t.equal(pods.length, 5);
    for (const p of lab.plan.pods) {
      const o = pods.find((x) => x.metadata.name === p.name);
      t.equal(o?.status.podIP, p.ip, `state dir has ${p.name}'s IP`);
      t.equal(o?.spec.nodeName, p.node, `state dir has ${p.name}'s node`);
      t.match(o?.metadata.uid, /^[0-9a-f-]{36}$/);
    }
    t.ok(existsSync(join(lab.stateDir, 'service.demo.web.yaml')) && existsSync(join(lab.stateDir, 'endpointslice.demo.web-lab.yaml')));

    // The lab's watcher notices the crash on its own: the controller's input changes without `status`.
    const phase = () => (parse(readFileSync(join(lab.stateDir, 'pod.outside.crasher-0.yaml'), 'utf8')) as { status: { phase: string } }).status.phase;
    for (let i = 0; i < 50 && phase() !== 'Failed'; i++) await new Promise((r) => setTimeout(r, 100));
    t.equal(phase(), 'Failed', 'the state dir follows the crash');
    const st = await lab.status();
    t.match(st.pods.find((p) => p.name === 'crasher-0'), { state: 'crashed', exitCode: 3 }, 'a crashed pod shows in status with its exit code');
    t.equal(st.pods.filter((p) => p.state === 'running').length, 4);
    t.match(readFileSync(lab.logPath('crasher'), 'utf8'), /going down/, 'pod output goes to its log file');

    const applied = lab.apply('apiVersion: v1\nkind: Namespace\nmetadata: { name: outside, labels: { rondo.dev/dataplane-mode: ambient } }\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: { name: x }\n', 'p.yaml');
    t.match(applied, [{ resource: 'namespace/outside', outcome: 'configured' }, { outcome: 'rejected', message: /p\.yaml:6: ConfigMap x: kind: cannot apply ConfigMap/ }], 'a bad resource is rejected alone');
    t.match(readFileSync(join(lab.stateDir, 'namespace.outside.yaml'), 'utf8'), /rondo\.dev\/dataplane-mode: ambient/);

    // A second lab with the same address ranges coexists.
    const other = await withLab(t, `apiVersion: lab.rondo.dev/v1\nkind: Lab\nspec: { nodes: 1 }\n${dep('web', 'default', 1, ['node', '-e', web])}`);
    await other.waitForPort('web-0', 8080);
    t.equal((await other.exec('web-0', ['curl', '-s', '-m', '3', `http://${other.podIp('web-0')}:8080/`])).stdout, 'hello from web-0 on node-1\n', 'second lab answers');
    t.equal((await lab.exec('client', ['curl', '-s', '-m', '3', `http://${vip}/`])).stdout.startsWith('hello from web-0'), true, 'first lab still answers');
    await Lab.down(other.name);

    const during = snapshot(name);
    t.ok(during.netns.length >= 8 && during.processes.length >= 4 && during.etcNetns.length === 5, 'the lab made namespaces, processes, /etc/netns entries');
    t.same(during.rootLinks, before.rootLinks, 'nothing was added to the root namespace');
    await Lab.down(name);
    t.same(snapshot(name), before, 'down leaves nothing behind (namespaces, links, /etc/netns, processes, run dir)');
  });

  t.test('down after a crashed up removes what was recorded and nothing else', async (t) => {
    const name = uniqueLabName();
    const before = snapshot(name);
    const specWithBadCmd = parseLabSpec(spec, 's.yaml');
    specWithBadCmd.lab.name = name;
    specWithBadCmd.lab.mesh = false;
    // A runner that fails half way through, as a crash during `up` would.
    let calls = 0;
    const { runCommand } = await import('../../lab/run-command.ts');
    const failing: typeof runCommand = (cmd, args, o) => (++calls === 12 ? Promise.reject(new Error('boom')) : runCommand(cmd, args, o));
    await t.rejects(Lab.up(specWithBadCmd, { run: failing }), /boom/);
    t.same(snapshot(name), before, 'the failed up cleaned up after itself');
  });

  t.test('a bad spec or clashing ranges give the promised errors and create nothing', async (t) => {
    const name = uniqueLabName();
    const before = snapshot(name);
    await t.rejects(withLab(t, spec.replace(`command: ${JSON.stringify(['sleep', 'infinity'])}`, 'image: only'), { name }),
      { code: 'RONDO_E_INVALID', message: /test-spec\.yaml:\d+: Deployment outside\/client: spec\.template\.spec\.containers\[0\]\.command: required/ });
    await t.rejects(withLab(t, spec.replace('spec: { nodes: 2 }', 'spec: { nodes: 2, serviceCIDR: 10.244.0.0/16 }'), { name }),
      { message: /overlaps/ });
    t.same(snapshot(name), before);
  });

  t.test('up refuses namespaces it did not make, and down refuses labs it does not know', async (t) => {
    const name = uniqueLabName();
    spawnSync('ip', ['netns', 'add', `${name}-n1`]);
    t.teardown(() => { spawnSync('ip', ['netns', 'del', `${name}-n1`]); });
    await t.rejects(withLab(t, spec, { name }), { code: 'RONDO_E_LAB_CLASH', message: new RegExp(`${name}-n1 already exists and was not made by lab "${name}"`) });
    t.ok(spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.includes(`${name}-n1`), 'the foreign namespace is untouched');
    t.notOk(existsSync(`/run/rondo/${name}`), 'no run dir was made');
    await t.rejects(Lab.down(uniqueLabName()), { code: 'RONDO_E_LAB_NOT_FOUND' });
  });
}
