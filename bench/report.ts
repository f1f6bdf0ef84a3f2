/** Writes the benchmark report: Markdown tables with ratios, the raw JSON, and SVG plots. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ratio, type Summary } from './stats.ts';

/** One figure measured on every path, with whether bigger is better. */
export interface FigureDef {
  key: string;
  label: string;
  unit: string;
  higherIsBetter: boolean;
}

export interface PathResult {
  name: string;
  label: string;
  figures: Record<string, Summary>;
}

export interface TargetCheck {
  figure: string;
  target: string;
  measured: string;
  met: boolean | undefined;
}

export interface BenchReport {
  /** paths that were asked for but could not be measured, with the reason */
  skipped?: { name: string; label: string; reason: string }[];
  startedAt: string;
  finishedAt: string;
  machine: Record<string, string | number>;
  rounds: number;
  figures: FigureDef[];
  paths: PathResult[];
  extra: Record<string, unknown>;
  targets: TargetCheck[];
  notes: string[];
}

function fmt(v: number, unit: string): string {
  if (!Number.isFinite(v)) return '—';
  if (unit === 'req/s' || unit === 'conn/s') return v >= 1000 ? `${(v / 1000).toFixed(1)}k` : v.toFixed(0);
  if (unit === 'ms') return v.toFixed(3);
  if (unit === 'MB') return v.toFixed(1);
  return v < 10 ? v.toFixed(2) : v.toFixed(1);
}

function fmtRatio(v: number): string {
  return Number.isFinite(v) ? `${v.toFixed(2)}×` : '—';
}

/** The Markdown report: per figure, every path's median (min–max) and its ratio to the baselines. */
export function renderMarkdown(r: BenchReport): string {
  const out: string[] = [];
  out.push('# Rondo benchmark report', '');
  out.push(`Run ${r.startedAt} → ${r.finishedAt}; ${r.rounds} interleaved rounds; medians with (min–max).`, '');
  out.push('## Machine', '', '| | |', '|---|---|');
  for (const [k, v] of Object.entries(r.machine)) out.push(`| ${k} | ${v} |`);
  out.push('');
  if (r.targets.length > 0) {
    out.push('## Targets', '', '| figure | target | measured | met |', '|---|---|---|---|');
    for (const t of r.targets) out.push(`| ${t.figure} | ${t.target} | ${t.measured} | ${t.met === undefined ? '—' : t.met ? 'yes' : 'no'} |`);
    out.push('');
  }
  if (r.skipped !== undefined && r.skipped.length > 0) {
    out.push('## Paths not measured', '', '| path | reason |', '|---|---|');
    for (const x of r.skipped) out.push(`| ${x.label} | ${x.reason.replace(/\|/g, '\\|').replace(/\n/g, ' ')} |`);
    out.push('');
  }
  const direct = r.paths.find((p) => p.name === 'direct');
  const haproxy = r.paths.find((p) => p.name === 'haproxy');
  out.push('## Data plane', '');
  for (const f of r.figures) {
    if (!r.paths.some((p) => p.figures[f.key] !== undefined)) continue;
    out.push(`### ${f.label} (${f.unit}, ${f.higherIsBetter ? 'higher' : 'lower'} is better)`, '');
    out.push('| path | median | min–max | vs direct | vs HAProxy |', '|---|---|---|---|---|');
    for (const p of r.paths) {
      const s = p.figures[f.key];
      if (s === undefined) continue;
      const d = direct?.figures[f.key]?.median ?? Number.NaN;
      const h = haproxy?.figures[f.key]?.median ?? Number.NaN;
      out.push(`| ${p.label} | ${fmt(s.median, f.unit)} | ${fmt(s.min, f.unit)}–${fmt(s.max, f.unit)} | ${fmtRatio(ratio(s.median, d))} | ${fmtRatio(ratio(s.median, h))} |`);
    }
    out.push('');
  }
  out.push('![latency percentiles](latency.svg)', '', '![requests per second](throughput.svg)', '', '![bulk throughput](bulk.svg)', '');
  for (const [k, v] of Object.entries(r.extra)) {
    out.push(`## ${k}`, '', '```json', JSON.stringify(v, null, 2), '```', '');
  }
  if (r.notes.length > 0) out.push('## Notes', '', ...r.notes.map((n) => `- ${n}`), '');
  return out.join('\n');
}

const PALETTE = ['#4c78a8', '#f58518', '#54a24b', '#e45756', '#72b7b2', '#b279a2', '#ff9da6'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
}

/** A grouped bar chart as SVG: one group per category, one bar per series. */
export function barChart(title: string, unit: string, categories: string[], series: { name: string; values: number[] }[]): string {
  const w = 760, h = 360, left = 60, bottom = 60, top = 40, right = 160;
  const plotW = w - left - right, plotH = h - top - bottom;
  const all = series.flatMap((s) => s.values.filter((v) => Number.isFinite(v)));
  const max = all.length > 0 ? Math.max(...all) * 1.1 : 1;
  const groupW = plotW / Math.max(categories.length, 1);
  const barW = (groupW * 0.8) / Math.max(series.length, 1);
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${w}" height="${h}" fill="white"/>`);
  parts.push(`<text x="${w / 2}" y="20" text-anchor="middle" font-size="14">${esc(title)}</text>`);
  for (let i = 0; i <= 4; i++) {
    const y = top + plotH - (plotH * i) / 4;
    parts.push(`<line x1="${left}" x2="${left + plotW}" y1="${y}" y2="${y}" stroke="#ddd"/>`);
    parts.push(`<text x="${left - 6}" y="${y + 4}" text-anchor="end">${((max * i) / 4).toPrecision(3)}</text>`);
  }
  parts.push(`<text x="14" y="${top + plotH / 2}" transform="rotate(-90 14 ${top + plotH / 2})" text-anchor="middle">${esc(unit)}</text>`);
  categories.forEach((c, ci) => {
    const gx = left + ci * groupW + groupW * 0.1;
    series.forEach((s, si) => {
      const v = s.values[ci] ?? Number.NaN;
      if (!Number.isFinite(v)) return;
      const bh = (plotH * v) / max;
      parts.push(`<rect x="${gx + si * barW}" y="${top + plotH - bh}" width="${barW - 1}" height="${bh}" fill="${PALETTE[si % PALETTE.length]}"><title>${esc(s.name)} ${esc(c)}: ${v.toPrecision(4)}</title></rect>`);
    });
    parts.push(`<text x="${left + ci * groupW + groupW / 2}" y="${top + plotH + 18}" text-anchor="middle">${esc(c)}</text>`);
  });
  series.forEach((s, si) => {
    const y = top + si * 18;
    parts.push(`<rect x="${w - right + 10}" y="${y}" width="12" height="12" fill="${PALETTE[si % PALETTE.length]}"/>`);
    parts.push(`<text x="${w - right + 28}" y="${y + 10}">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/** Writes latest.md, latest.json, latency.svg, throughput.svg and bulk.svg into dir. */
export function writeReport(dir: string, r: BenchReport): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'latest.json'), JSON.stringify(r, null, 2) + '\n');
  writeFileSync(join(dir, 'latest.md'), renderMarkdown(r));
  const lat = ['p50_c1_ms', 'p99_c1_ms', 'p999_c1_ms', 'p50_c16_ms', 'p99_c16_ms'];
  writeFileSync(
    join(dir, 'latency.svg'),
    barChart('Latency percentiles (1 KiB responses)', 'ms', lat.map((k) => k.replace('_ms', '')), r.paths.map((p) => ({ name: p.label, values: lat.map((k) => p.figures[k]?.median ?? Number.NaN) }))),
  );
  const thr = ['rps_c1', 'rps_c16', 'conn_per_s'];
  writeFileSync(
    join(dir, 'throughput.svg'),
    barChart('Requests per second', 'req/s', thr, r.paths.map((p) => ({ name: p.label, values: thr.map((k) => p.figures[k]?.median ?? Number.NaN) }))),
  );
  writeFileSync(
    join(dir, 'bulk.svg'),
    barChart('Bulk throughput (iperf3, one stream)', 'Gbit/s', ['bulk_gbps'], r.paths.map((p) => ({ name: p.label, values: [p.figures['bulk_gbps']?.median ?? Number.NaN] }))),
  );
}

/** Every figure the data-plane bench records per path, in report order. */
export const FIGURES: readonly FigureDef[] = [
  { key: 'rps_c1', label: 'Requests/s, keep-alive, c=1', unit: 'req/s', higherIsBetter: true },
  { key: 'p50_c1_ms', label: 'p50 latency, c=1', unit: 'ms', higherIsBetter: false },
  { key: 'p99_c1_ms', label: 'p99 latency, c=1', unit: 'ms', higherIsBetter: false },
  { key: 'p999_c1_ms', label: 'p99.9 latency, c=1', unit: 'ms', higherIsBetter: false },
  { key: 'rps_c16', label: 'Requests/s, keep-alive, c=16', unit: 'req/s', higherIsBetter: true },
  { key: 'p50_c16_ms', label: 'p50 latency, c=16', unit: 'ms', higherIsBetter: false },
  { key: 'p99_c16_ms', label: 'p99 latency, c=16', unit: 'ms', higherIsBetter: false },
  { key: 'p999_c16_ms', label: 'p99.9 latency, c=16', unit: 'ms', higherIsBetter: false },
  { key: 'conn_per_s', label: 'New connections/s (connection per request, c=16)', unit: 'conn/s', higherIsBetter: true },
  { key: 'bulk_gbps', label: 'Bulk throughput (iperf3)', unit: 'Gbit/s', higherIsBetter: true },
  { key: 'cpu_us_per_req_c16', label: 'Proxy CPU per request, c=16, all hops', unit: 'µs', higherIsBetter: false },
  { key: 'cpu_us_per_req_hop_c16', label: 'Proxy CPU per request per hop, c=16', unit: 'µs', higherIsBetter: false },
  { key: 'kernel_share_c16_pct', label: 'Share of proxy CPU spent in the kernel, c=16 (syscalls, TCP, wake-ups)', unit: '%', higherIsBetter: false },
  { key: 'cpu_us_per_req_hop_c1', label: 'Proxy CPU per request per hop, c=1 (every event wakes the process)', unit: 'µs', higherIsBetter: false },
  { key: 'cpu_us_per_conn', label: 'Proxy CPU per new connection, all hops', unit: 'µs', higherIsBetter: false },
  { key: 'cpu_s_per_gb', label: 'Proxy CPU per GB of bulk transfer', unit: 's', higherIsBetter: false },
  { key: 'rss_idle_mb', label: 'Proxy RSS when idle (largest proxy of the path)', unit: 'MB', higherIsBetter: false },
  { key: 'rss_1k_conns_mb', label: 'Proxy RSS with 1,000 open connections (largest proxy)', unit: 'MB', higherIsBetter: false },
  { key: 'pss_idle_mb', label: 'Proxy PSS when idle (shared pages counted once; largest proxy)', unit: 'MB', higherIsBetter: false },
  { key: 'pss_1k_conns_mb', label: 'Proxy PSS with 1,000 open connections (largest proxy)', unit: 'MB', higherIsBetter: false },
  { key: 'peak_rss_mb', label: 'Proxy peak RSS over the run (largest proxy)', unit: 'MB', higherIsBetter: false },
];

/** Control-plane figures the targets use (from bench/control-plane.ts). */
export interface ControlPlaneFigures { podChangeMedianMs: number }

/** Pure: the target table from the medians (met undefined when a side was not measured). */
export function checkTargets(paths: readonly PathResult[], cp?: ControlPlaneFigures): TargetCheck[] {
  const m = (path: string, key: string): number => paths.find((p) => p.name === path)?.figures[key]?.median ?? Number.NaN;
  const x = (v: number, digits = 2): string => (Number.isFinite(v) ? `${v.toFixed(digits)}×` : '—');
  const out: TargetCheck[] = [];
  const atLeast = (figure: string, target: string, v: number, min: number, shown: string): void => {
    out.push({ figure, target, measured: shown, met: Number.isFinite(v) ? v >= min : undefined });
  };
  const atMost = (figure: string, target: string, v: number, max: number, shown: string): void => {
    out.push({ figure, target, measured: shown, met: Number.isFinite(v) ? v <= max : undefined });
  };
  const rc16 = ratio(m('l4', 'rps_c16'), m('haproxy', 'rps_c16'));
  atLeast('L4 keep-alive c=16 requests/s vs HAProxy tunnel', '≥ 1.2×', rc16, 1.2, x(rc16));
  const rconn = ratio(m('l4', 'conn_per_s'), m('haproxy', 'conn_per_s'));
  atLeast('L4 new connections/s vs HAProxy tunnel', '≥ 4×', rconn, 4, x(rconn));
  const rbulk = ratio(m('l4', 'bulk_gbps'), m('haproxy', 'bulk_gbps'));
  atLeast('L4 bulk throughput vs HAProxy tunnel', '≥ 1.0×', rbulk, 1.0, x(rbulk));
  const added = m('l4', 'p50_c1_ms') - m('direct', 'p50_c1_ms');
  atMost('L4 c=1 median latency added over direct', '≤ 0.04 ms', added, 0.04, Number.isFinite(added) ? `${added.toFixed(3)} ms` : '—');
  const rp99 = ratio(m('l4', 'p99_c1_ms'), m('haproxy', 'p99_c1_ms'));
  atMost("L4 c=1 p99 latency vs HAProxy tunnel's p99", '≤ 2×', rp99, 2, x(rp99));
  const cpu = m('l4', 'cpu_us_per_req_hop_c16');
  atMost('agent CPU per request at c=16, per hop', '≤ 12 µs', cpu, 12, Number.isFinite(cpu) ? `${cpu.toFixed(1)} µs` : '—');
  // One target in the issue, two rows here: each half is met or missed on its own.
  const mb = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(1)} MB` : '—');
  const pss = (key: string): string => (Number.isFinite(m('l4', key)) ? ` (PSS ${mb(m('l4', key))})` : '');
  const idle = m('l4', 'rss_idle_mb');
  atMost('agent RSS idle', '≤ 50 MB', idle, 50, `${mb(idle)}${pss('pss_idle_mb')}`);
  const held = m('l4', 'rss_1k_conns_mb');
  atMost('agent RSS with 1,000 open connections', '≤ 120 MB', held, 120, `${mb(held)}${pss('pss_1k_conns_mb')}`);
  const rl7 = ratio(m('l7', 'rps_c16'), m('l4', 'rps_c16'));
  atLeast('L7 c=16 requests/s vs the L4 mesh', '≥ 0.5×', rl7, 0.5, x(rl7));
  const pc = cp?.podChangeMedianMs ?? Number.NaN;
  atMost('one pod change reaching 100 proxies at 10k pods / 1k services (median)', '≤ 50 ms', pc, 50, Number.isFinite(pc) ? `${pc.toFixed(1)} ms` : '—');
  return out;
}
