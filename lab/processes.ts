/**
 * Detached processes inside a network namespace (pods, controller, node agents): started with
 * `ip netns exec`, output to a log file, exit code written by a tiny `sh` wrapper, and killed
 * by process group only after checking the pid still belongs to the process that was started.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readdirSync } from 'node:fs';
import { RondoError } from '../common/errors.ts';

/** What is known about a started process. */
export interface ProcessInfo { pid: number; startTime: string; log: string }
/** Liveness of a recorded process. */
export type ProcessState = { state: 'running' } | { state: 'exited'; code?: number };

/** Start time of a pid (field 22 of /proc/<pid>/stat); undefined when the pid is gone. */
export function procStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may contain spaces.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (rest[0] === 'Z') return undefined; // a zombie has exited
    return rest[19];
  } catch {
    return undefined;
  }
}

/** True when the pid is alive and is still the process we started (not a reused pid). */
export function isOurs(p: { pid: number; startTime: string }): boolean {
  return procStartTime(p.pid) === p.startTime;
}

/** Starts `argv` in netns `ns`, detached, stdout+stderr appended to `log`; `exitFile` gets the exit code. */
export function startInNetns(o: { netns: string; argv: string[]; env: Record<string, string>; log: string; exitFile: string; cwd: string }): ProcessInfo {
  if (o.argv.length === 0) throw new RondoError('RONDO_E_INVALID', `empty command for netns ${o.netns}`);
  return startDetached({ ...o, argv: ['ip', 'netns', 'exec', o.netns, 'sh', '-c', EXIT_WRAPPER, o.exitFile, ...o.argv] });
}

/** Starts `argv` detached in the current netns (the lab's own helpers), same log/exit-file handling. */
export function startWrapped(o: { argv: string[]; env: Record<string, string>; log: string; exitFile: string; cwd: string }): ProcessInfo {
  return startDetached({ ...o, argv: ['sh', '-c', EXIT_WRAPPER, o.exitFile, ...o.argv] });
}

// sh stays the parent so the exit code is recorded even though nobody waits on us.
const EXIT_WRAPPER = '"$@"; echo $? > "$0"';

function startDetached(o: { argv: string[]; env: Record<string, string>; log: string; cwd: string }): ProcessInfo {
  const [cmd, ...args] = o.argv;
  const fd = openSync(o.log, 'a');
  try {
    const child = spawn(cmd!, args, { detached: true, stdio: ['ignore', fd, fd], env: o.env, cwd: o.cwd });
    child.unref();
    const pid = child.pid;
    if (pid === undefined) throw new RondoError('RONDO_E_LAB_PROCESS', `could not start ${o.argv.join(' ')}: is ${cmd} installed? see ${o.log}`);
    child.on('error', () => undefined); // reported through the exit file / liveness instead
    return { pid, startTime: procStartTime(pid) ?? '?', log: o.log };
  } finally {
    closeSync(fd);
  }
}

/** Running or exited (with the code the wrapper wrote, when it got to write one). */
export function processState(p: { pid: number; startTime: string }, exitFile: string): ProcessState {
  if (isOurs(p)) return { state: 'running' };
  if (existsSync(exitFile)) {
    const code = Number(readFileSync(exitFile, 'utf8').trim());
    return Number.isInteger(code) ? { state: 'exited', code } : { state: 'exited' };
  }
  return { state: 'exited' };
}

/**
 * Live members of process group `pgid` (field 5 of /proc/<pid>/stat; zombies have exited).
 * The group outlives its leader: the `sh` wrapper dies on SIGTERM at once while the process
 * it started (an agent draining its connections) is still running and holding its ports.
 */
export function groupMembers(pgid: number, procDir = '/proc'): number[] {
  const out: number[] = [];
  let names: string[];
  try { names = readdirSync(procDir); } catch { return out; }
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try { stat = readFileSync(`${procDir}/${name}/stat`, 'utf8'); } catch { continue; }
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (rest[0] !== 'Z' && Number(rest[2]) === pgid) out.push(Number(name));
  }
  return out;
}

/**
 * Kills the process group (SIGTERM, then SIGKILL after `graceMs`) and returns once every
 * member is gone, not only the leader; only if the leader is still ours or its group still
 * has members (Linux does not reuse a pid while it names a live process group).
 */
export async function killGroup(p: { pid: number; startTime: string }, graceMs = 1500, sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))): Promise<void> {
  const alive = (): boolean => isOurs(p) || groupMembers(p.pid).length > 0;
  if (!isOurs(p)) return;
  const signal = (s: NodeJS.Signals): void => {
    try { process.kill(-p.pid, s); } catch { /* group already gone */ }
  };
  signal('SIGTERM');
  for (let waited = 0; waited < graceMs; waited += 50) {
    if (!alive()) return;
    await sleep(50);
  }
  signal('SIGKILL');
  // SIGKILL cannot be caught; the kernel still takes a moment to tear the members down.
  for (let i = 0; i < 100 && alive(); i++) await sleep(20);
}
