/**
 * CPU and memory of the processes a path is charged with: a process group is a root pid and
 * all its descendants (node agents may run worker processes; threads are already in the
 * process's own /proc counters). Read from /proc before and after each measurement.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { parseProcStat } from './parse.ts';

/** CPU seconds and memory of one process group at one moment. */
export interface GroupSample {
  cpuSeconds: number; rssBytes: number; hwmBytes: number;
  /** the part of cpuSeconds spent in the kernel (system time: syscalls, TCP, wake-ups) */
  sysSeconds: number;
  /** proportional set size: shared pages (the node binary in every worker) counted once across the group */
  pssBytes: number; pids: number[];
}

/** Pure: the `Pss:` of /proc/<pid>/smaps_rollup in bytes (0 when absent). */
export function parsePss(smapsRollup: string): number {
  const m = /^Pss:\s+(\d+) kB/m.exec(smapsRollup);
  return m === null ? 0 : Number(m[1]) * 1024;
}

/** Pure: `root` and every process below it, from (pid, ppid) pairs. */
export function descendants(root: number, parents: ReadonlyMap<number, number>): number[] {
  const children = new Map<number, number[]>();
  for (const [pid, ppid] of parents) {
    const list = children.get(ppid);
    if (list === undefined) children.set(ppid, [pid]);
    else list.push(pid);
  }
  const out: number[] = [];
  const todo = [root];
  while (todo.length > 0) {
    const p = todo.pop()!;
    if (out.includes(p)) continue;
    out.push(p);
    todo.push(...(children.get(p) ?? []));
  }
  return out;
}

/** Pure: parent pid and command name from /proc/<pid>/stat text. */
export function statParent(stat: string): { ppid: number; comm: string } {
  const open = stat.indexOf('(');
  const close = stat.lastIndexOf(')');
  const rest = stat.slice(close + 2).split(' ');
  return { ppid: Number(rest[1]), comm: stat.slice(open + 1, close) };
}

/** Pure: adds up a group's samples; wrapper shells (`sh`, `ip`) are left out, they only wait. */
export function sumGroup(procs: { pid: number; comm: string; cpuSeconds: number; sysSeconds?: number; rssBytes: number; hwmBytes: number; pssBytes: number }[]): GroupSample {
  const real = procs.filter((p) => p.comm !== 'sh' && p.comm !== 'ip');
  return {
    cpuSeconds: real.reduce((a, p) => a + p.cpuSeconds, 0),
    sysSeconds: real.reduce((a, p) => a + (p.sysSeconds ?? 0), 0),
    rssBytes: real.reduce((a, p) => a + p.rssBytes, 0),
    hwmBytes: real.reduce((a, p) => a + p.hwmBytes, 0),
    pssBytes: real.reduce((a, p) => a + p.pssBytes, 0),
    pids: real.map((p) => p.pid),
  };
}

function read(path: string): string | undefined {
  try { return readFileSync(path, 'utf8'); } catch { return undefined; }
}

/** Current (pid → ppid) table of the machine. */
function processTable(): Map<number, number> {
  const m = new Map<number, number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const s = read(`/proc/${d}/stat`);
    if (s !== undefined) m.set(Number(d), statParent(s).ppid);
  }
  return m;
}

/** Samples every named group (name → root pid); a group whose root is gone samples as zero. */
export function sampleGroups(groups: ReadonlyMap<string, number>): Map<string, GroupSample> {
  const table = processTable();
  const out = new Map<string, GroupSample>();
  for (const [name, root] of groups) {
    const procs = table.has(root) ? descendants(root, table).flatMap((pid) => {
      const stat = read(`/proc/${pid}/stat`);
      const status = read(`/proc/${pid}/status`);
      if (stat === undefined || status === undefined) return [];
      return [{ pid, comm: statParent(stat).comm, ...parseProcStat(stat, status), pssBytes: parsePss(read(`/proc/${pid}/smaps_rollup`) ?? '') }];
    }) : [];
    out.set(name, sumGroup(procs));
  }
  return out;
}

/** CPU seconds (or with `field: 'sysSeconds'`, kernel seconds) each group used between two samples. */
export function cpuDelta(before: ReadonlyMap<string, GroupSample>, after: ReadonlyMap<string, GroupSample>,
  field: 'cpuSeconds' | 'sysSeconds' = 'cpuSeconds'): Map<string, number> {
  const out = new Map<string, number>();
  for (const [name, a] of after) out.set(name, Math.max(0, a[field] - (before.get(name)?.[field] ?? a[field])));
  return out;
}
