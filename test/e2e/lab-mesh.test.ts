import t from 'tap';
import { mkdirSync, writeFileSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { Lab } from '../../lab/lab.ts';
import { parseLabSpec } from '../../lab/spec.ts';
import { labSkipReason, uniqueLabName } from '../helpers/lab.ts';

// Stand-ins with the contract's command lines: the real controller and agent are built elsewhere.
const fakeController = `
import http from 'node:http'; import fs from 'node:fs'; import path from 'node:path';
const arg = (k: string): string => process.argv[process.argv.indexOf(k) + 1];
fs.mkdirSync(arg('--ca-dir'), { recursive: true });
fs.writeFileSync(path.join(arg('--ca-dir'), 'root-cert.pem'), 'fake');
const tokens: Record<string, { node?: string }> = JSON.parse(fs.readFileSync(arg('--tokens'), 'utf8'));
const files = fs.readdirSync(arg('--files'));
http.createServer((q, r) => {
  if (q.url === '/healthz/ready') return r.end('ok');
  if (q.url === '/debug/proxies') return r.end(JSON.stringify(Object.values(tokens).map((proxy) => ({ proxy, files: files.length }))));
  r.statusCode = 404; r.end();
}).listen(15014, arg('--listen'));
`;
const fakeAgent = `
import http from 'node:http'; import fs from 'node:fs'; import path from 'node:path';
const arg = (k: string): string => process.argv[process.argv.indexOf(k) + 1];
const token = fs.readFileSync(arg('--token-file'), 'utf8').trim();
const tokens: Record<string, { node?: string }> = JSON.parse(fs.readFileSync(path.join(path.dirname(path.dirname(arg('--token-file'))), 'tokens.json'), 'utf8'));
const ok = tokens[token] && tokens[token].node === arg('--node') && fs.existsSync(arg('--ca-file')) && arg('--controller').endsWith(':15012');
http.createServer((q, r) => { r.statusCode = ok ? 200 : 500; r.end(); }).listen(15020, '0.0.0.0');
`;

const skip = labSkipReason();
if (skip !== undefined) {
  t.test('lab mesh end-to-end tests', { skip }, () => undefined);
} else {
  const spec = (name: string) => {
    const s = parseLabSpec(`apiVersion: lab.rondo.dev/v1\nkind: Lab\nspec: { nodes: 2, mesh: true }\n`, 'mesh.yaml');
    s.lab.name = name;
    return s;
  };
  const leftovers = (name: string) => ({
    netns: spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l.startsWith(`${name}-`)),
    processes: readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
      try { return readFileSync(`/proc/${p}/environ`, 'utf8').split('\0').includes(`RONDO_LAB=${name}`); } catch { return false; }
    }),
  });

  t.test('mesh: controller and node agents start with tokens, show in status, and go with down', async (t) => {
    const repo = t.testdir({ controller: { 'main.ts': fakeController }, 'node-agent': { 'main.ts': fakeAgent } });
    const name = uniqueLabName();
    t.teardown(() => Lab.down(name).catch(() => undefined));
    const lab = await Lab.up(spec(name), { meshRepo: repo, meshTimeoutMs: 10_000, ownerPid: process.pid });
    const st = await lab.status();
    t.same(st.mesh.map((m) => [m.name, m.state]), [['controller', 'running'], ['node-agent/node-1', 'running'], ['node-agent/node-2', 'running']]);
    t.same((st.proxies as { proxy: unknown }[]).map((p) => p.proxy).sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
      [{ kind: 'node-agent', node: 'node-1' }, { kind: 'node-agent', node: 'node-2' }], 'status shows the controller\'s proxies');
    t.equal(((st.proxies as { files: number }[])[0])?.files, readdirSync(lab.stateDir).length, 'the controller saw the state dir');
    await Lab.down(name);
    t.same(leftovers(name), { netns: [], processes: [] }, 'down killed the mesh processes');
  });

  t.test('mesh: a controller that never gets ready fails up with its log path, and up cleans up', async (t) => {
    const repo = t.testdir({ controller: { 'main.ts': 'setInterval(() => {}, 1000);' } });
    const name = uniqueLabName();
    t.teardown(() => Lab.down(name).catch(() => undefined));
    await t.rejects(Lab.up(spec(name), { meshRepo: repo, meshTimeoutMs: 800 }), { code: 'RONDO_E_LAB_NOT_READY', message: /controller .*not ready after 0\.8s; see \/run\/rondo\/.*\/logs\/controller\.log/ });
    t.same(leftovers(name), { netns: [], processes: [] });
  });

  t.test('mesh: a controller that exits is reported at once', async (t) => {
    const repo = t.testdir({ controller: { 'main.ts': 'console.error("bad flag"); process.exit(2);' } });
    const name = uniqueLabName();
    t.teardown(() => Lab.down(name).catch(() => undefined));
    await t.rejects(Lab.up(spec(name), { meshRepo: repo, meshTimeoutMs: 10_000 }), { message: /the process exited; see .*controller\.log/ });
  });

  t.test('rondo lab up leaves the pods running after the CLI exits', async (t) => {
    const dir = t.testdir();
    const name = uniqueLabName();
    t.teardown(() => Lab.down(name).catch(() => undefined));
    mkdirSync(dir, { recursive: true });
    const file = join(dir, 'spec.yaml');
    writeFileSync(file, `apiVersion: apps/v1\nkind: Deployment\nmetadata: { name: web }\nspec:\n  template:\n    spec:\n      containers:\n        - name: w\n          command: [node, -e, "require('http').createServer((q,r)=>r.end('up')).listen(8080)"]\n`);
    const node = process.execPath;
    const cli = join(import.meta.dirname, '..', '..', 'cli', 'rondo.ts');
    const up = spawnSync(node, [cli, 'lab', 'up', '-f', file, '--name', name], { encoding: 'utf8', timeout: 60_000 });
    t.equal(up.status, 0, up.stderr);
    t.match(up.stdout, `lab ${name} is up: 2 nodes, 1 pods`);
    const lab = Lab.open(name);
    await lab.waitForPort('web', 8080);
    t.equal((await lab.exec('web', ['curl', '-s', `http://${lab.podIp('web')}:8080/`])).stdout, 'up');
    const status = spawnSync(node, [cli, 'lab', 'status', '--name', name], { encoding: 'utf8' });
    t.match(status.stdout, /default\/web-0\s+node-1\s+10\.244\.1\.2\s+running/);
    const bad = spawnSync(node, [cli, 'lab', 'up', '-f', join(dir, 'missing.yaml'), '--name', 'x'], { encoding: 'utf8' });
    t.equal(bad.status, 1);
    t.match(bad.stderr, /rondo: cannot read lab spec .*missing\.yaml/);
    const down = spawnSync(node, [cli, 'lab', 'down', '--name', name], { encoding: 'utf8' });
    t.equal(down.status, 0, down.stderr);
    t.same(leftovers(name), { netns: [], processes: [] });
  });
}
