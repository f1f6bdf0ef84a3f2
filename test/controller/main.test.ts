import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../helpers/net.ts';

const node = process.execPath;
const main = join(import.meta.dirname, '../../controller/main.ts');


t.test('bad flags: exit 1 with a JSON error naming the flag', (t) => {
  const r = spawnSync(node, [main, '--files', '/tmp', '--listen', 'not-an-ip', '--ca-dir', '/tmp/x', '--tokens', '/tmp/y'], { encoding: 'utf8' });
  t.equal(r.status, 1);
  t.match(r.stderr, /"code":"RONDO_E_INVALID".*--listen must be an IP address/);
  t.end();
});

t.test('a --debug-token-file that holds no usable token stops the start with an error naming it', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rondo-main-dbg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'tokens.json'), JSON.stringify({ 'node-1-token-0123456789': { kind: 'node-agent', node: 'node-1' } }));
  writeFileSync(join(dir, 'debug-token'), 'short\n');
  const r = spawnSync(node, [main, '--files', dir, '--listen', '127.0.0.1', '--ca-dir', join(dir, 'ca'), '--tokens', join(dir, 'tokens.json'),
    '--push-port', '0', '--metrics-port', '0', '--debug-token-file', join(dir, 'debug-token')], { encoding: 'utf8', timeout: 20_000 });
  t.equal(r.status, 1);
  t.match(r.stderr, /"code":"RONDO_E_CONFIG".*--debug-token-file .*debug-token must hold one token of 16 or more characters/);
  t.end();
});

t.test('the controller process starts from the contract command line, creates its CA and reports ready', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rondo-main-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'state'));
  writeFileSync(join(dir, 'tokens.json'), JSON.stringify({ 'node-1-token-0123456789': { kind: 'node-agent', node: 'node-1' } }));
  const [push, metrics] = [await freePort(), await freePort()];
  const child = spawn(node, [main, '--files', join(dir, 'state'), '--listen', '127.0.0.1', '--ca-dir', join(dir, 'ca'),
    '--tokens', join(dir, 'tokens.json'), '--push-port', String(push), '--metrics-port', String(metrics), '--debounce-ms', '10'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  t.teardown(() => { child.kill('SIGKILL'); });
  let status = 0;
  for (let i = 0; i < 200 && status !== 200; i++) {
    status = await fetch(`http://127.0.0.1:${metrics}/healthz/ready`).then((r) => r.status, () => 0);
    if (status !== 200) await new Promise((r) => setTimeout(r, 50));
  }
  t.equal(status, 200, 'ready');
  t.equal(statSync(join(dir, 'ca', 'root-key.pem')).mode & 0o777, 0o600, 'root key is private');
  t.match(readFileSync(join(dir, 'ca', 'root-cert.pem'), 'utf8'), /BEGIN CERTIFICATE/);
  t.match(await (await fetch(`http://127.0.0.1:${metrics}/metrics`)).text(), /rondo_controller_config_version 1/);
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'SIGTERM shuts down cleanly');
  t.match(stderr, /"msg":"controller ready"/);
});
