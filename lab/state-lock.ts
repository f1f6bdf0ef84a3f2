/**
 * A lock between the processes that write a lab's waypoint objects: `rondo lab apply/delete`
 * and the watcher (which marks a crashed waypoint Failed). Without it the watcher could write
 * back the Pod of a waypoint that `delete` had just removed. `mkdir` is atomic; the holder's
 * pid inside lets a lock left by a killed process be taken over.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RondoError } from '../common/errors.ts';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Runs `fn` holding `<dir>/state.lock`; waits up to `timeoutMs` for another holder. */
export async function withStateLock<T>(dir: string, fn: () => Promise<T> | T, o: { timeoutMs?: number; sleep?: (ms: number) => Promise<void> } = {}): Promise<T> {
  const lock = join(dir, 'state.lock');
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const timeoutMs = o.timeoutMs ?? 15_000;
  for (let waited = 0; ; waited += 20) {
    try {
      mkdirSync(lock);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    let holder = NaN;
    try { holder = Number(readFileSync(join(lock, 'pid'), 'utf8')); } catch { /* being created or removed */ }
    // A holder that died (killed CLI) never releases: take it over. A lock without a pid
    // file yet is being taken right now; it gets the benefit of the doubt until the timeout.
    if (Number.isInteger(holder) && holder > 0 && !alive(holder)) {
      rmSync(lock, { recursive: true, force: true });
      continue;
    }
    if (waited >= timeoutMs) {
      throw new RondoError('RONDO_E_LAB_NOT_READY', `the lab's state lock ${lock} is held by ${Number.isInteger(holder) ? `pid ${holder}` : 'another process'} for more than ${timeoutMs / 1000}s; if no \`rondo lab\` command is running, remove it`);
    }
    await sleep(20);
  }
  try {
    writeFileSync(join(lock, 'pid'), String(process.pid));
    return await fn();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}
