/**
 * The README's test command: installs missing Debian packages, type-checks, lints,
 * runs every tap test (end-to-end ones serially), and ends with the line CI reads:
 * `N passed, N failed`, counted from tap's own result files.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Parser } from 'tap-parser';
import { ensureDeps } from './ensure-deps.ts';

interface Step { name: string; ok: boolean }

function run(name: string, cmd: string, args: string[]): Step {
  process.stdout.write(`\n== ${name}: ${cmd} ${args.join(' ')}\n`);
  const r = spawnSync(cmd, args, { stdio: 'inherit', env: process.env });
  return { name, ok: r.status === 0 };
}

function walk(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? walk(join(dir, d.name)) : d.name.endsWith('.tap') ? [join(dir, d.name)] : [],
  );
}

/** Counts leaf assertions in tap's per-file results; a file that did not finish cleanly counts as a failure. */
function countResults(dir: string): { pass: number; fail: number; skip: number; failedFiles: string[] } {
  let pass = 0, fail = 0, skip = 0;
  const failedFiles: string[] = [];
  for (const file of walk(dir)) {
    const p = new Parser({ flat: true });
    let res: { ok: boolean; pass: number; fail: number; skip: number; todo: number } | undefined;
    p.on('complete', (r: typeof res) => { res = r; });
    p.end(readFileSync(file, 'utf8'));
    if (res === undefined) { fail++; failedFiles.push(file); continue; }
    pass += res.pass - res.skip - res.todo > 0 ? res.pass - res.skip - res.todo : 0;
    skip += res.skip + res.todo;
    fail += res.fail;
    if (!res.ok && res.fail === 0) { fail++; failedFiles.push(file); }
    else if (res.fail > 0) failedFiles.push(file);
  }
  return { pass, fail, skip, failedFiles };
}

const only = process.argv.slice(2);
ensureDeps();
const steps: Step[] = [];
if (only.length === 0) {
  steps.push(run('typecheck', 'tsc', ['--noEmit', '-p', '.']));
  steps.push(run('lint', 'eslint', ['.']));
  // The production build (dist/) must keep compiling: emit it into a throwaway directory.
  const out = mkdtempSync(join(tmpdir(), 'rondo-build-'));
  steps.push(run('build', 'tsc', ['-p', 'tsconfig.build.json', '--outDir', out]));
  rmSync(out, { recursive: true, force: true });
}
const resultsDir = '.tap/test-results';
rmSync(resultsDir, { recursive: true, force: true });
const tap = run('tests', 'tap', ['--reporter=terse', ...only]);

const counted = countResults(resultsDir);
let passed = counted.pass;
let failed = counted.fail;
for (const s of steps) {
  if (s.ok) passed++;
  else { failed++; process.stdout.write(`FAILED step: ${s.name}\n`); }
}
// tap also fails the run on a coverage floor; count that as one failure.
if (!tap.ok && failed === 0) { failed++; process.stdout.write('FAILED step: tap (coverage floor or runner error)\n'); }
for (const f of counted.failedFiles) process.stdout.write(`FAILED file: ${f}\n`);
process.stdout.write(`\n${passed} passed, ${failed} failed${counted.skip > 0 ? `, ${counted.skip} skipped` : ''}\n`);
process.exitCode = failed === 0 ? 0 : 1;
