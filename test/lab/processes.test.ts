import t from 'tap';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { procStartTime, isOurs, killGroup, processState } from '../../lab/processes.ts';

t.test('a process is ours only with the recorded start time; killGroup ends the whole group', async (t) => {
  const child = spawn('sh', ['-c', 'sleep 30 & sleep 30; wait'], { detached: true, stdio: 'ignore' });
  const pid = child.pid!;
  t.teardown(() => { try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ } });
  const exited = new Promise((r) => child.on('exit', r));
  const startTime = procStartTime(pid)!;
  t.ok(startTime);
  t.ok(isOurs({ pid, startTime }));
  t.notOk(isOurs({ pid, startTime: 'other' }), 'a reused pid is not ours');
  const dir = t.testdir();
  t.same(processState({ pid, startTime }, join(dir, 'x.exit')), { state: 'running' });
  await killGroup({ pid, startTime: 'other' }, 100);
  t.ok(isOurs({ pid, startTime }), 'a pid that is not ours is never signalled');
  await killGroup({ pid, startTime }, 2000);
  await exited;
  t.notOk(isOurs({ pid, startTime }));
  writeFileSync(join(dir, 'x.exit'), '3\n');
  t.same(processState({ pid, startTime }, join(dir, 'x.exit')), { state: 'exited', code: 3 });
  t.same(processState({ pid, startTime }, join(dir, 'none.exit')), { state: 'exited' });
});
