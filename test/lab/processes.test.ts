import t from 'tap';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { existsSync, writeFileSync } from 'node:fs';
import { procStartTime, isOurs, killGroup, processState, groupMembers } from '../../lab/processes.ts';

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

t.test('killGroup waits for every member of the group, not only the leader that dies first', async (t) => {
  // The leader (like the lab's sh wrapper) dies on SIGTERM at once; its child traps SIGTERM
  // and lingers, as a draining agent does, holding what it holds until it exits.
  const dir = t.testdir();
  const done = join(dir, 'child-done');
  const child = spawn('sh', ['-c', `sh -c 'trap "sleep 0.4; touch ${done}; exit 0" TERM; while :; do sleep 0.05; done' & wait`], { detached: true, stdio: 'ignore' });
  const pid = child.pid!;
  t.teardown(() => { try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ } });
  const startTime = procStartTime(pid)!;
  while (groupMembers(pid).length < 2) await new Promise((r) => setTimeout(r, 10));
  t.ok(groupMembers(pid).includes(pid), 'the leader is a member');
  await killGroup({ pid, startTime }, 5000);
  t.ok(existsSync(done), 'the lingering member finished its SIGTERM handling before killGroup returned');
  t.same(groupMembers(pid), [], 'no member left');
});

t.test('killGroup SIGKILLs members that outlast the grace period', async (t) => {
  const child = spawn('sh', ['-c', `sh -c 'trap "" TERM; while :; do sleep 0.05; done' & wait`], { detached: true, stdio: 'ignore' });
  const pid = child.pid!;
  t.teardown(() => { try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ } });
  const startTime = procStartTime(pid)!;
  while (groupMembers(pid).length < 2) await new Promise((r) => setTimeout(r, 10));
  await killGroup({ pid, startTime }, 200);
  t.same(groupMembers(pid), [], 'the member ignoring SIGTERM is gone too');
});
