import t from 'tap';
import { checkPrerequisites, resolveCommand, listLabs, REPO_ROOT } from '../../lab/lab.ts';
import type { CommandRunner } from '../../lab/run-command.ts';
import { runCommand } from '../../lab/run-command.ts';
import { join } from 'node:path';
import { mkdirSync, writeFileSync } from 'node:fs';

const ok: CommandRunner = () => Promise.resolve({ stdout: '', stderr: '', code: 0 });

t.test('prerequisites: not root, missing tools', async (t) => {
  await t.rejects(checkPrerequisites(ok, 1000), { code: 'RONDO_E_LAB_NOT_ROOT', message: /needs root/ });
  const noIptables: CommandRunner = (cmd) => Promise.resolve({ stdout: '', stderr: '', code: cmd === 'iptables-restore' ? 127 : 0 });
  await t.rejects(checkPrerequisites(noIptables, 0), { code: 'RONDO_E_LAB_TOOL_MISSING', message: /iptables-restore is missing.*install iptables-restore|iptables/ });
  await t.resolves(checkPrerequisites(ok, 0));
});

t.test('the real runner names a missing command and a failing one', async (t) => {
  await t.rejects(runCommand('rondo-no-such-tool', []), { code: 'RONDO_E_LAB_COMMAND', message: /rondo-no-such-tool is not installed/ });
  await t.rejects(runCommand('sh', ['-c', 'echo nope >&2; exit 3']), { message: 'sh -c echo nope >&2; exit 3: nope' });
  t.match(await runCommand('sh', ['-c', 'exit 4'], { allowFail: true }), { code: 4 });
  t.match(await runCommand('cat', [], { input: 'piped' }), { stdout: 'piped', code: 0 });
});

t.test('rondo-demo maps to the demo entry point, other commands run as written', (t) => {
  t.same(resolveCommand(['rondo-demo', 'echo', '--port', '8080']), [process.execPath, join(REPO_ROOT, 'lab', 'demo', 'main.ts'), 'echo', '--port', '8080']);
  t.same(resolveCommand(['sleep', '1']), ['sleep', '1']);
  t.end();
});

t.test('listLabs lists run dirs with a record only', (t) => {
  const root = t.testdir();
  mkdirSync(join(root, 'a'));
  writeFileSync(join(root, 'a', 'record.json'), '{"entries":[]}');
  mkdirSync(join(root, 'b'));
  t.same(listLabs(root), ['a']);
  t.same(listLabs(join(root, 'missing')), []);
  t.end();
});
