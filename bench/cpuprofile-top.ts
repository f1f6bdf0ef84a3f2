/**
 * `node bench/cpuprofile-top.ts <file-or-dir>… [--top 30]`: summarizes V8 `.cpuprofile` files
 * (from `node --cpu-prof`) by self time per function, summed over all given profiles, so a
 * profile of the agent's workers reads as one table (see docs/performance.md).
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

interface ProfileNode { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number }
interface Profile { nodes: ProfileNode[]; samples?: number[]; timeDeltas?: number[]; startTime: number; endTime: number }

/** Self time in µs per `function (file:line)`, from one profile. */
export function selfTimes(p: Profile): Map<string, number> {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const out = new Map<string, number>();
  const samples = p.samples ?? [];
  const deltas = p.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) {
    const n = byId.get(samples[i] ?? -1);
    if (n === undefined) continue;
    const f = n.callFrame;
    const file = f.url.replace(/^.*\/(node_modules|work\/main)\//, '').replace(/^node:/, '');
    const key = `${f.functionName || '(anonymous)'} ${file}:${f.lineNumber + 1}`;
    out.set(key, (out.get(key) ?? 0) + Math.max(0, deltas[i + 1] ?? deltas[i] ?? 0));
  }
  return out;
}

function files(args: string[]): string[] {
  return args.flatMap((a) => statSync(a).isDirectory()
    ? readdirSync(a).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(a, f)) : [a]);
}

function main(): void {
  const argv = process.argv.slice(2);
  const ti = argv.indexOf('--top');
  const top = ti >= 0 ? Number(argv[ti + 1]) : 30;
  const paths = files(argv.filter((_, i) => i !== ti && i !== ti + 1));
  const total = new Map<string, number>();
  let all = 0;
  for (const f of paths) {
    const p = JSON.parse(readFileSync(f, 'utf8')) as Profile;
    for (const [k, v] of selfTimes(p)) { total.set(k, (total.get(k) ?? 0) + v); all += v; }
  }
  process.stdout.write(`${paths.length} profiles, ${(all / 1000).toFixed(0)} ms sampled\n`);
  for (const [k, v] of [...total].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    process.stdout.write(`${(v / 1000).toFixed(1).padStart(9)} ms ${((100 * v) / all).toFixed(1).padStart(5)} %  ${k}\n`);
  }
}

if (import.meta.main) main();
