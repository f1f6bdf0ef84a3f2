import t from 'tap';
import { join } from 'node:path';
import { mkdirSync, writeFileSync } from 'node:fs';
import { parseArgs, pickLab, formatStatus, runLabCli, infraNetns } from '../../lab/cli.ts';
import type { Lab } from '../../lab/lab.ts';
import { main } from '../../cli/rondo.ts';
import { writeTokens, controllerArgv, agentArgv, AGENT_NODE_FLAGS } from '../../lab/mesh.ts';
import { parseLabSpec } from '../../lab/spec.ts';
import { planLab } from '../../lab/plan.ts';
import { readFileSync, statSync } from 'node:fs';

t.test('argument parsing', (t) => {
  const a = parseArgs(['-f', 'x.yaml', '--name=l2', '--demo', 'pod', '--', 'curl', '-s'], ['-f', '--name'], ['--demo']);
  t.same([...a.flags], [['-f', 'x.yaml'], ['--name', 'l2'], ['--demo', true]]);
  t.same(a.positional, ['pod']);
  t.same(a.rest, ['curl', '-s']);
  t.throws(() => parseArgs(['--bogus'], [], []), { code: 'RONDO_E_USAGE', message: /unknown option --bogus/ });
  t.throws(() => parseArgs(['-f'], ['-f'], []), { message: /-f needs a value/ });
  t.end();
});

t.test('which lab a command means', (t) => {
  const root = t.testdir();
  t.throws(() => pickLab(undefined, root), { code: 'RONDO_E_LAB_NOT_FOUND' });
  for (const n of ['a', 'b']) { mkdirSync(join(root, n)); writeFileSync(join(root, n, 'record.json'), '{}'); }
  t.throws(() => pickLab(undefined, root), { code: 'RONDO_E_LAB_AMBIGUOUS', message: /a, b/ });
  t.equal(pickLab('b', root), 'b');
  t.end();
});

t.test('status table shows crashed pods with exit codes', (t) => {
  const s = formatStatus({
    name: 'l', runDir: '/run/rondo/l', nodes: [{ name: 'node-1', ip: '10.250.0.11', podCIDR: '10.244.1.0/24', netns: 'l-n1' }],
    pods: [{ namespace: 'demo', name: 'web-0', node: 'node-1', ip: '10.244.1.2', netns: 'l-p1', state: 'crashed', exitCode: 3, log: 'x' }],
    services: [], mesh: [], proxiesError: 'controller /debug/proxies answered nothing',
  });
  t.match(s, /demo\/web-0\s+node-1\s+10\.244\.1\.2\s+crashed \(exit 3\)/);
  t.match(s, /connected proxies: unknown/);
  t.end();
});

t.test('dispatcher: usage and unknown commands', async (t) => {
  const out = t.capture(process.stdout, 'write', () => true);
  const err = t.capture(process.stderr, 'write', () => true);
  t.equal(await main([]), 2);
  t.equal(await main(['nope']), 2);
  t.equal(await main(['--help']), 0);
  await t.rejects(runLabCli(['frobnicate']), { code: 'RONDO_E_USAGE' });
  await t.rejects(runLabCli(['exec', 'pod']), { message: /exec needs a pod and a command after --/ });
  const writes = [...out(), ...err()].map((c) => String(c.args[0]));
  t.match(writes.join(''), /unknown command "nope"/);
  t.match(writes.join(''), /lab\s+a local cluster/);
});

t.test('mesh tokens and command lines follow the contract', (t) => {
  const plan = planLab(parseLabSpec('apiVersion: lab.rondo.dev/v1\nkind: Lab\nmetadata: { name: m1 }\nspec: { nodes: 2 }\n', 'm.yaml'));
  const dir = t.testdir();
  const files = writeTokens(dir, plan);
  const table = JSON.parse(readFileSync(join(dir, 'tokens.json'), 'utf8')) as Record<string, unknown>;
  const tok = readFileSync(files.get('node-2')!, 'utf8').trim();
  t.match(tok, /^[0-9a-f]{64}$/);
  t.same(table[tok], { kind: 'node-agent', node: 'node-2' });
  t.equal(statSync(files.get('node-2')!).mode & 0o777, 0o600);
  t.same(controllerArgv({ node: 'node', repo: '/r', stateDir: '/s', runDir: dir, plan }),
    ['node', '/r/controller/main.ts', '--files', '/s', '--listen', '10.250.0.2', '--ca-dir', join(dir, 'ca'), '--tokens', join(dir, 'tokens.json')]);
  t.same(agentArgv({ node: 'node', repo: '/r', runDir: dir, plan, nodeName: 'node-1', tokenFile: '/t' }),
    ['node', ...AGENT_NODE_FLAGS, '/r/node-agent/main.ts', '--node', 'node-1', '--controller', '10.250.0.2:15012', '--token-file', '/t', '--ca-file', join(dir, 'ca', 'root-cert.pem')]);
  const short = planLab(parseLabSpec('apiVersion: lab.rondo.dev/v1\nkind: Lab\nmetadata: { name: m1 }\nspec: { nodes: 1, meshOptions: { certTtlSeconds: 20 } }\n', 'm.yaml'));
  t.same(controllerArgv({ node: 'node', repo: '/r', stateDir: '/s', runDir: dir, plan: short }).slice(-2), ['--cert-ttl', '20'], 'spec.meshOptions.certTtlSeconds reaches the controller');
  t.end();
});

t.test('exec targets: node names, bridge and controller map to their netns; pods do not', (t) => {
  const lab = { plan: { bridge: { netns: 'L-br' }, controller: { netns: 'L-ctl' }, nodes: [{ name: 'node-1', netns: 'L-n1' }, { name: 'node-2', netns: 'L-n2' }] } } as unknown as Lab;
  t.equal(infraNetns(lab, 'node-2'), 'L-n2');
  t.equal(infraNetns(lab, 'bridge'), 'L-br');
  t.equal(infraNetns(lab, 'controller'), 'L-ctl');
  t.equal(infraNetns(lab, 'frontend'), undefined);
  t.end();
});
