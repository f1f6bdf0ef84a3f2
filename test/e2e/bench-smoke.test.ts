/**
 * Smoke test of `npm run bench`: the runner in --quick mode with the direct and HAProxy paths
 * only, on its own lab, into a temp results dir; the report must carry numbers for both.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { labSkipReason, sweepOrphanTestLabs, uniqueLabName } from '../helpers/lab.ts';
import { parseBenchArgs, runBench, runCleanups } from '../../bench/run.ts';
import type { BenchReport } from '../../bench/report.ts';
import { RUN_ROOT } from '../../lab/record.ts';
import { Lab, REPO_ROOT } from '../../lab/lab.ts';

const skip = labSkipReason();

t.test('bench --quick measures direct and HAProxy paths and writes the report', { skip: skip ?? false, timeout: 90_000 }, async (t) => {
  await sweepOrphanTestLabs();
  const out = mkdtempSync(join(tmpdir(), 'rondo-bench-smoke-'));
  const name = uniqueLabName();
  const cleanups: (() => Promise<unknown>)[] = [];
  t.teardown(async () => {
    await runCleanups(cleanups, () => undefined);
    rmSync(out, { recursive: true, force: true });
  });
  const o = { ...parseBenchArgs(['--quick', '--paths', 'direct,haproxy', '--out', out, '--name', name, '--connections', '200']), log: () => undefined };
  const r = await runBench(o, cleanups);

  t.notOk(existsSync(join(RUN_ROOT, name)), 'the lab is gone once the report is written');
  t.same(r.paths.map((p) => p.name), ['direct', 'haproxy']);
  for (const p of r.paths) {
    for (const k of ['rps_c1', 'p50_c1_ms', 'p99_c1_ms', 'rps_c16', 'conn_per_s', 'bulk_gbps']) {
      t.ok((p.figures[k]?.median ?? 0) > 0, `${p.name} ${k} = ${p.figures[k]?.median}`);
    }
  }
  const h = r.paths.find((p) => p.name === 'haproxy')!;
  t.ok((h.figures['cpu_us_per_req_c16']?.median ?? 0) > 0, 'HAProxy CPU per request is accounted');
  t.ok((h.figures['rss_1k_conns_mb']?.median ?? 0) > (h.figures['rss_idle_mb']?.median ?? Infinity) * 0.5, 'memory with open connections read');
  t.ok(r.targets.every((c) => c.met === undefined), 'no L4 path asked for: every target is —');

  const md = readFileSync(join(out, 'latest.md'), 'utf8');
  t.match(md, /\| direct \(no mesh\) \| [\d.]+k? \|/);
  t.match(md, /\| HAProxy mTLS tunnel \| [\d.]+k? \|/);
  t.match(md, /\| cores \| \d+ \|/);
  const json = JSON.parse(readFileSync(join(out, 'latest.json'), 'utf8')) as BenchReport;
  t.equal(json.paths.length, 2);
  for (const f of ['latency.svg', 'throughput.svg', 'bulk.svg']) t.match(readFileSync(join(out, f), 'utf8'), /^<svg[\s\S]*<rect x=/, `${f} has bars`);
});

t.test('Ctrl-C during a measurement removes the lab and exits 130', { skip: skip ?? false, timeout: 60_000 }, async (t) => {
  await sweepOrphanTestLabs();
  const out = mkdtempSync(join(tmpdir(), 'rondo-bench-sigint-'));
  const name = uniqueLabName();
  t.teardown(async () => {
    if (existsSync(join(RUN_ROOT, name, 'record.json'))) await Lab.down(name);
    rmSync(out, { recursive: true, force: true });
  });
  const child = spawn(process.execPath, [join(REPO_ROOT, 'bench', 'run.ts'), '--paths', 'direct', '--seconds', '20', '--rounds', '1', '--no-control-plane', '--out', out, '--name', name], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  const code = await new Promise<number | null>((resolve) => {
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('round 1/1 c1 direct') && !child.killed) setTimeout(() => child.kill('SIGINT'), 500);
    });
    child.once('exit', (c) => resolve(c));
  });
  t.equal(code, 130, err);
  t.match(err, /SIGINT: tearing down/);
  t.notOk(existsSync(join(RUN_ROOT, name)), 'no run directory left');
  t.notOk(existsSync(join(out, 'latest.json')), 'no report from an interrupted run');
});
