import t from 'tap';
import { checkTargets, renderMarkdown, FIGURES } from '../../bench/report.ts';
import type { BenchReport, PathResult } from '../../bench/report.ts';
import { summarize } from '../../bench/stats.ts';

const path = (name: string, figs: Record<string, number>): PathResult => ({
  name, label: name, figures: Object.fromEntries(Object.entries(figs).map(([k, v]) => [k, summarize([v])])),
});

const paths = [
  path('direct', { p50_c1_ms: 0.07, rps_c16: 70000 }),
  path('haproxy', { rps_c16: 30000, conn_per_s: 1500, bulk_gbps: 6, p99_c1_ms: 0.2 }),
  path('l4', { rps_c16: 37000, conn_per_s: 5000, bulk_gbps: 5, p50_c1_ms: 0.1, p99_c1_ms: 0.5, cpu_us_per_req_hop_c16: 11, rss_idle_mb: 40, rss_1k_conns_mb: 130, pss_idle_mb: 30, pss_1k_conns_mb: 100 }),
];

t.test('targets are computed from medians; met is yes/no, and — when a side is missing', (t) => {
  const byFigure = Object.fromEntries(checkTargets(paths, { podChangeMedianMs: 12 }).map((c) => [c.figure, c]));
  const get = (prefix: string) => Object.values(byFigure).find((c) => c.figure.startsWith(prefix))!;
  t.equal(get('L4 keep-alive c=16').met, true, '37k / 30k = 1.23 ≥ 1.2');
  t.equal(get('L4 keep-alive c=16').measured, '1.23×');
  t.equal(get('L4 new connections/s').met, false, '3.3× < 4×');
  t.equal(get('L4 bulk').met, false);
  t.equal(get('L4 c=1 median latency added').met, true, '0.03 ms added');
  t.equal(get('L4 c=1 median latency added').measured, '0.030 ms');
  t.equal(get('L4 c=1 p99').met, false, '2.5× > 2×');
  t.equal(get('agent CPU').met, true);
  t.equal(get('agent RSS idle').met, true, 'idle: 40 ≤ 50 MB');
  t.equal(get('agent RSS idle').measured, '40.0 MB (PSS 30.0 MB)', 'RSS decides; PSS shown for multi-process agents');
  t.equal(get('agent RSS with 1,000').met, false, '130 MB > 120 MB with 1k connections, met or missed on its own');
  t.equal(get('agent RSS with 1,000').measured, '130.0 MB (PSS 100.0 MB)');
  t.equal(get('L7').met, undefined, 'no waypoint path: not measured');
  t.equal(get('L7').measured, '—');
  t.equal(get('one pod change').met, true);
  t.end();
});

t.test('without the mesh every L4 target is unmeasured, never failed', (t) => {
  const checks = checkTargets(paths.filter((p) => p.name !== 'l4'));
  t.equal(checks.length, 10);
  t.ok(checks.every((c) => c.met === undefined), 'all —');
  t.end();
});

t.test('the report lists skipped paths with their reason and figures with ratios', (t) => {
  const r: BenchReport = {
    startedAt: 'a', finishedAt: 'b', machine: { cores: 2 }, rounds: 3, figures: [...FIGURES], paths,
    skipped: [{ name: 'l7', label: 'Rondo L7', reason: 'no waypoint | yet' }], extra: {}, targets: checkTargets(paths), notes: [],
  };
  const md = renderMarkdown(r);
  t.match(md, /## Paths not measured[\s\S]*\| Rondo L7 \| no waypoint \\\| yet \|/);
  t.match(md, /\| l4 \| 37\.0k \| 37\.0k–37\.0k \| 0\.53× \| 1\.23× \|/);
  t.end();
});
