// The crash policy: an uncaught exception or unhandled rejection is logged with its code and
// ends the process (non-zero) even while servers and timers would keep it alive.
import t from 'tap';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { CRASH_EXIT_CODE, crashCode, installCrashHandlers } from '../../common/crash.ts';
import { createLogger } from '../../common/log.ts';

function run(mode: string): Promise<{ code: number | null; stdout: string; records: Record<string, unknown>[] }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(import.meta.dirname, 'crash-child.ts'), mode], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('close', (code) => resolve({
      code, stdout,
      records: stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>),
    }));
  });
}

t.test('an uncaught exception is logged with its code and exits non-zero', async (t) => {
  const r = await run('throw');
  t.equal(r.stdout, 'listening\n', 'it was serving');
  t.equal(r.code, CRASH_EXIT_CODE);
  t.match(r.records, [{ level: 'error', component: 'crash-child', msg: /^uncaught exception: exiting/, code: 'ERR_TEST_BOOM', error: { message: 'boom in a callback' }, stack: /crash-child\.ts/ }]);
});

t.test('a second exception while flushing is not logged again and does not change the exit', async (t) => {
  const r = await run('twice');
  t.equal(r.code, CRASH_EXIT_CODE);
  t.equal(r.records.length, 1);
  t.match(r.records[0], { code: 'ERR_TEST_BOOM' });
});

t.test('an unhandled rejection crashes the same way, whatever was rejected', async (t) => {
  const r = await run('reject');
  t.equal(r.code, CRASH_EXIT_CODE);
  t.match(r.records, [{ msg: /^unhandled rejection: exiting/, code: 'RONDO_E_FATAL', error: { message: 'a bare string' } }]);
});

t.test('codes: its own, else RONDO_E_FATAL; the handlers install once', (t) => {
  t.equal(crashCode(Object.assign(new Error('x'), { code: 'RONDO_E_CAPTURE' })), 'RONDO_E_CAPTURE');
  t.equal(crashCode(new Error('x')), 'RONDO_E_FATAL');
  t.equal(crashCode(null), 'RONDO_E_FATAL');
  t.equal(crashCode({ code: 7 }), 'RONDO_E_FATAL');
  const log = createLogger('test', { write: () => true });
  const before = process.listenerCount('uncaughtException');
  t.equal(installCrashHandlers({ log, exit: () => undefined }), true);
  t.equal(installCrashHandlers({ log, exit: () => undefined }), false, 'a second call adds nothing');
  t.equal(process.listenerCount('uncaughtException'), before + 1);
  // Leave tap's own handling of this process alone.
  process.removeListener('uncaughtException', process.listeners('uncaughtException').at(-1)!);
  process.removeListener('unhandledRejection', process.listeners('unhandledRejection').at(-1)!);
  t.end();
});

t.test('the controller process installs them: an exception in a handler ends it with the crash status', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rondo-crash-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'state'));
  writeFileSync(join(dir, 'tokens.json'), '{}');
  // Stands in for a bug in some event handler of the running controller.
  const inject = "data:text/javascript,process.on('SIGUSR2',()=>{throw Object.assign(new Error('injected bug'),{code:'ERR_TEST_INJECTED'})})";
  const child = spawn(process.execPath, ['--import', inject, join(import.meta.dirname, '../../controller/main.ts'), '--files', join(dir, 'state'), '--listen', '127.0.0.1',
    '--ca-dir', join(dir, 'ca'), '--tokens', join(dir, 'tokens.json'), '--push-port', '0', '--metrics-port', '0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.teardown(() => { child.kill('SIGKILL'); });
  let stderr = '';
  const ready = new Promise<void>((resolve) => child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); if (stderr.includes('"controller ready"')) resolve(); }));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  await Promise.race([ready, exited.then(() => { throw new Error(`controller exited before it was ready:\n${stderr}`); })]);
  child.kill('SIGUSR2');
  t.equal(await exited, CRASH_EXIT_CODE, 'exits with the crash status instead of running on');
  const rec = stderr.split('\n').filter((l) => l.includes('uncaught exception')).map((l) => JSON.parse(l) as Record<string, unknown>);
  t.match(rec, [{ level: 'error', component: 'controller', code: 'ERR_TEST_INJECTED', error: { message: 'injected bug' } }]);
});
