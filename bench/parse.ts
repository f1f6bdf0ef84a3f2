/** Parsers for the load tools' machine-readable output (wrk with wrk-json.lua, h2load, iperf3 -J). */

export interface LoadResult {
  requests: number;
  seconds: number;
  rps: number;
  errors: number;
  /** microseconds */
  latency: { p50: number; p90: number; p99: number; p999: number; mean: number; max: number };
}

/** Reads the `WRK_JSON {...}` line printed by bench/wrk-json.lua. */
export function parseWrk(stdout: string): LoadResult {
  const line = stdout.split('\n').find((l) => l.startsWith('WRK_JSON '));
  if (line === undefined) throw new Error(`wrk printed no WRK_JSON line (is bench/wrk-json.lua loaded?): ${stdout.slice(0, 300)}`);
  const j = JSON.parse(line.slice('WRK_JSON '.length)) as {
    requests: number; duration_us: number;
    errors: Record<string, number>;
    latency_us: { mean: number; max: number; p50: number; p90: number; p99: number; p999: number };
  };
  const seconds = j.duration_us / 1e6;
  const errors = Object.values(j.errors).reduce((a, b) => a + b, 0);
  return {
    requests: j.requests,
    seconds,
    rps: j.requests / seconds,
    errors,
    latency: { p50: j.latency_us.p50, p90: j.latency_us.p90, p99: j.latency_us.p99, p999: j.latency_us.p999, mean: j.latency_us.mean, max: j.latency_us.max },
  };
}

const H2_UNITS: Record<string, number> = { us: 1, ms: 1000, s: 1_000_000 };
function toMicros(v: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(v);
  if (m === null) throw new Error(`h2load: unreadable time ${v}`);
  return Number(m[1]) * H2_UNITS[m[2]!]!;
}

/** Reads h2load's summary (requests/s, failures, request time mean/max); percentiles are not printed by h2load. */
export function parseH2load(stdout: string): LoadResult {
  const fin = /finished in ([\d.]+)s, ([\d.]+) req\/s/.exec(stdout);
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(stdout);
  const rt = /time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)/.exec(stdout);
  if (fin === null || req === null || rt === null) throw new Error(`h2load output not understood: ${stdout.slice(0, 300)}`);
  const mean = toMicros(rt[3]!);
  return {
    requests: Number(req[4]),
    seconds: Number(fin[1]),
    rps: Number(fin[2]),
    errors: Number(req[5]) + Number(req[6]),
    latency: { p50: Number.NaN, p90: Number.NaN, p99: Number.NaN, p999: Number.NaN, mean, max: toMicros(rt[2]!) },
  };
}

/** Reads `iperf3 -J` client output: received throughput in Gbit/s. */
export function parseIperf3(json: string): { gbps: number; retransmits: number } {
  const j = JSON.parse(json) as { error?: string; end?: { sum_received?: { bits_per_second: number }; sum_sent?: { retransmits?: number } } };
  if (j.error !== undefined) throw new Error(`iperf3: ${j.error}`);
  const bps = j.end?.sum_received?.bits_per_second;
  if (bps === undefined) throw new Error('iperf3: no end.sum_received in its JSON');
  return { gbps: bps / 1e9, retransmits: j.end?.sum_sent?.retransmits ?? 0 };
}

/** CPU seconds (user+system) and RSS bytes of a process from /proc/<pid>/stat and status text. */
export function parseProcStat(stat: string, status: string, clockTicks = 100): { cpuSeconds: number; sysSeconds: number; rssBytes: number; hwmBytes: number } {
  // Field 2 (comm) may contain spaces: split after the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  const kb = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status);
    return m === null ? 0 : Number(m[1]) * 1024;
  };
  return { cpuSeconds: (utime + stime) / clockTicks, sysSeconds: stime / clockTicks, rssBytes: kb('VmRSS'), hwmBytes: kb('VmHWM') };
}

/** Figures printed by bench/control-plane.ts. */
export interface ControlPlaneResult {
  pods: number; services: number; proxies: number;
  coldBuildMs: number; incrementalBuildMs: number; initialPushMs: number;
  podChangeMedianMs: number; podChangeP99Ms: number; controllerRssMiB: number; controllerHeapMiB: number;
}

/** Reads the text report of bench/control-plane.ts; a missing line is an error naming it. */
export function parseControlPlane(stdout: string): ControlPlaneResult {
  const need = (re: RegExp, what: string): RegExpExecArray => {
    const m = re.exec(stdout);
    if (m === null) throw new Error(`control-plane bench printed no ${what} line: ${stdout.slice(0, 300)}`);
    return m;
  };
  const head = need(/control-plane bench: (\d+) pods, (\d+) services, (\d+) node agents/, 'header');
  const cold = need(/model build, cold:\s+([\d.]+) ms/, 'cold build');
  const incr = need(/after one pod change: median ([\d.]+) ms/, 'incremental build');
  const init = need(/initial snapshot to all proxies:\s+([\d.]+) ms/, 'initial snapshot');
  const change = need(/one pod change -> all \d+ ACKs: median ([\d.]+) ms, p99 ([\d.]+) ms/, 'pod change');
  const mem = need(/controller memory after the run:\s+rss ([\d.]+) MiB, heap used ([\d.]+) MiB/, 'controller memory');
  return {
    pods: Number(head[1]), services: Number(head[2]), proxies: Number(head[3]),
    coldBuildMs: Number(cold[1]), incrementalBuildMs: Number(incr[1]), initialPushMs: Number(init[1]),
    podChangeMedianMs: Number(change[1]), podChangeP99Ms: Number(change[2]), controllerRssMiB: Number(mem[1]), controllerHeapMiB: Number(mem[2]),
  };
}

/** Sum of every sample of one metric in Prometheus text format (all label sets). */
export function sumMetric(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== '{' && line[name.length] !== ' ')) continue;
    const v = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(v)) sum += v;
  }
  return sum;
}
