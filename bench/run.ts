/**
 * `npm run bench`: brings up the bench lab (bench/specs/bench.yaml), measures every data path
 * of bench/paths.ts in interleaved rounds, adds the control-plane bench, writes the report
 * (bench/results/latest.*) and always tears the lab and every process down, also on Ctrl-C.
 *
 *   node bench/run.ts [--seconds 5] [--rounds 3] [--quick] [--paths direct,haproxy]
 *                     [--out bench/results] [--name bXXXXX] [--no-control-plane] [--source] [--settle S]
 *
 * The mesh runs from a fresh production build (tsc → bench/results/tmp/dist), as a DaemonSet
 * image would; `--source` runs the `.ts` files through Node's type stripping instead (~20 MB
 * more RSS per process, docs/performance.md).
 */
import { execFile, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { InvalidInputError, errorMessage } from '../common/errors.ts';
import { ensureDeps } from '../scripts/ensure-deps.ts';
import { Lab, REPO_ROOT } from '../lab/lab.ts';
import { parseLabSpec } from '../lab/spec.ts';
import { RUN_ROOT, RunRecord } from '../lab/record.ts';
import { hasEntry, httpGetInNetns } from '../lab/mesh.ts';
import { runCommand } from '../lab/run-command.ts';
import { PATHS, PORTS, interleave, procKey, resolveTarget, selectPaths, unavailableReason } from './paths.ts';
import type { PathDef, Requirement } from './paths.ts';
import { cpuDelta, sampleGroups } from './procs.ts';
import type { GroupSample } from './procs.ts';
import { holdConnections, runIperf, runWrk } from './dataplane.ts';
import type { LoadName, PodExec } from './dataplane.ts';
import { startHaproxy, writeTunnelConfigs } from './haproxy.ts';
import type { RunningHaproxy } from './haproxy.ts';
import { parseControlPlane, sumMetric } from './parse.ts';
import type { ControlPlaneResult } from './parse.ts';
import { summarize } from './stats.ts';
import { FIGURES, checkTargets, writeReport } from './report.ts';
import type { BenchReport, PathResult } from './report.ts';
import { PORTS as MESH_PORTS } from '../common/ports.ts';

/** Options of one bench run. */
export interface BenchOptions {
  seconds: number; rounds: number; paths: PathDef[]; out: string; name: string; controlPlane: boolean;
  specFile: string; meshTimeoutMs: number; heldConnections: number; log: (line: string) => void;
  /** run the mesh from the `.ts` sources instead of a production build */
  source: boolean;
  /** seconds to wait before reading memory (default: see settleMs) */
  settleS?: number;
}

/** Parses the command line; every bad value is refused by name. */
export function parseBenchArgs(argv: string[]): Omit<BenchOptions, 'log'> {
  const { values } = parseArgs({
    args: argv, strict: true,
    options: {
      seconds: { type: 'string' }, rounds: { type: 'string' }, quick: { type: 'boolean', default: false }, paths: { type: 'string' },
      out: { type: 'string' }, name: { type: 'string' }, 'no-control-plane': { type: 'boolean', default: false }, spec: { type: 'string' },
      'mesh-timeout': { type: 'string' }, connections: { type: 'string' }, source: { type: 'boolean', default: false }, settle: { type: 'string' },
    },
  });
  const num = (v: string | undefined, flag: string, dflt: number, min: number): number => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new InvalidInputError(`${flag} "${v}": use a number ≥ ${min}`);
    return n;
  };
  const quick = values.quick;
  const name = values.name ?? `b${randomBytes(4).toString('hex').slice(0, 5).replace(/^\d/, 'x')}`;
  if (!/^[a-z][a-z0-9]{0,7}$/.test(name)) throw new InvalidInputError(`--name "${name}": use a lowercase letter then up to 7 lowercase letters or digits`);
  return {
    seconds: num(values.seconds, '--seconds', quick ? 1 : 5, 1),
    rounds: Math.floor(num(values.rounds, '--rounds', quick ? 1 : 3, 1)),
    paths: selectPaths(values.paths),
    out: values.out ?? join(REPO_ROOT, 'bench', 'results'),
    name,
    controlPlane: !values['no-control-plane'] && !quick,
    specFile: values.spec ?? join(REPO_ROOT, 'bench', 'specs', 'bench.yaml'),
    meshTimeoutMs: num(values['mesh-timeout'], '--mesh-timeout', 30, 1) * 1000,
    heldConnections: Math.floor(num(values.connections, '--connections', 1000, 1)),
    source: values.source,
    ...(values.settle !== undefined ? { settleS: num(values.settle, '--settle', 0, 0) } : {}),
  };
}

/** Where the last run's lab logs (controller, agents, pods) are kept (git-ignored). */
export const LOG_COPY_DIR = join(REPO_ROOT, 'bench', 'results', 'tmp', 'logs');

/** Where the bench's production build goes (git-ignored; node_modules resolves from there). */
export const BUILD_DIR = join(REPO_ROOT, 'bench', 'results', 'tmp', 'dist');

/**
 * Compiles the mesh (tsconfig.build.json) into `dir` (default BUILD_DIR; it must be inside the
 * repo so node_modules resolves); the lab runs it via RONDO_MESH_DIST.
 */
export function buildMesh(log: (line: string) => void, dir = BUILD_DIR): string {
  log(`build: tsc -p tsconfig.build.json --outDir ${dir}`);
  rmSync(dir, { recursive: true, force: true });
  const tsc = join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', join(REPO_ROOT, 'tsconfig.build.json'), '--outDir', dir], { encoding: 'utf8', cwd: REPO_ROOT });
  if (r.status !== 0) throw new InvalidInputError(`the production build failed (use --source to bench the .ts files):\n${r.stdout}${r.stderr}`);
  return dir;
}

const MB = 1024 * 1024;
/**
 * Memory is read in the steady state: this long after the lab went quiet (idle) or after the
 * last held connection opened. The agent hands garbage back after 30 s of quiet
 * (`--idle-reclaim-s`); every proxy, HAProxy included, gets the same wait. Without the mesh
 * there is nothing to wait for.
 */
export function settleMs(o: Pick<BenchOptions, 'settleS' | 'paths'>): number {
  if (o.settleS !== undefined) return o.settleS * 1000;
  return o.paths.some((p) => p.requires.includes('mesh')) ? 60_000 : 1_000;
}
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function firstLine(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n').find((l) => l.trim() !== '')?.trim() ?? 'unknown';
}

/** CPU model, cores, kernel and tool versions for the report. */
function machine(): Record<string, string | number> {
  const model = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpus()[0]?.model ?? 'unknown';
  return {
    cpu: model, cores: cpus().length, kernel: release(), node: process.version, openssl: process.versions.openssl,
    haproxy: firstLine('haproxy', ['-v']), wrk: firstLine('wrk', ['--version']), iperf3: firstLine('iperf3', ['--version']),
    'load average at start': loadavg().map((x) => x.toFixed(1)).join(' '),
  };
}

/** Brings the lab up with the mesh; if the mesh cannot start, again without it (the reason is kept). */
async function upLab(o: BenchOptions): Promise<{ lab: Lab; meshError?: string }> {
  const spec = parseLabSpec(readFileSync(o.specFile, 'utf8'), o.specFile);
  spec.lab.name = o.name;
  const needMesh = o.paths.some((p) => p.requires.includes('mesh'));
  spec.lab.mesh = needMesh;
  const opts = { ownerPid: process.pid, meshTimeoutMs: o.meshTimeoutMs, onProgress: (l: string) => o.log(`lab: ${l}`) };
  try {
    return { lab: await Lab.up(spec, opts) };
  } catch (e) {
    if (!needMesh) throw e;
    o.log(`lab with the mesh failed (${errorMessage(e)}); retrying without the mesh`);
    spec.lab.mesh = false;
    return { lab: await Lab.up(spec, opts), meshError: `the mesh did not start: ${errorMessage(e)}` };
  }
}

/** Root pids of the lab's mesh processes by group key (`node-agent/node-1`, `controller`, `waypoint`). */
function meshGroups(lab: Lab): Map<string, number> {
  const out = new Map<string, number>();
  for (const e of RunRecord.load(lab.runDir, lab.name).entries) {
    if (e.kind !== 'process') continue;
    if (e.role === 'node-agent' || e.role === 'controller') out.set(e.name, e.pid);
    else if (e.role === 'waypoint') out.set('waypoint', e.pid);
  }
  return out;
}

/** Why the L4 mesh cannot be measured, or undefined when the node agents carry the client's traffic. */
async function checkMesh(lab: Lab, o: BenchOptions, meshError: string | undefined): Promise<string | undefined> {
  if (meshError !== undefined) return meshError;
  if (!hasEntry(REPO_ROOT, 'controller')) return 'controller/main.ts does not exist yet';
  if (!hasEntry(REPO_ROOT, 'node-agent')) return 'node-agent/main.ts does not exist yet: no node agents';
  const st = await lab.status();
  const down = st.mesh.filter((m) => m.state !== 'running');
  if (down.length > 0) return `mesh processes not running: ${down.map((m) => `${m.name} (see ${m.log})`).join(', ')}`;
  const n1 = lab.plan.nodes.find((n) => n.name === 'node-1')!;
  const metrics = async (): Promise<number> => sumMetric((await httpGetInNetns(runCommand, n1.netns, `http://${n1.ip}:${MESH_PORTS.proxyHealth}/metrics`)).body, 'istio_tcp_connections_opened_total');
  const before = await metrics();
  const server = lab.podIp('bench-mesh/server');
  const r = await lab.exec('bench-mesh/client', ['curl', '-s', '-m', '5', '-o', '/dev/null', '-w', '%{http_code}', `http://${server}:${PORTS.http}/bytes/1024`], { allowFail: true, timeoutMs: 8000 });
  if (r.stdout.trim() !== '200') return `bench-mesh/client could not reach ${server}:${PORTS.http} through the mesh (curl: ${r.stdout.trim() || r.stderr.trim()}); see ${lab.runDir}/logs/agent-node-1.log`;
  await sleep(200);
  const after = await metrics();
  if (!(after > before)) return `the node agent on node-1 did not count the connection (istio_tcp_connections_opened_total ${before} → ${after}): traffic is not captured`;
  o.log('mesh: traffic from bench-mesh/client goes through the node agents');
  return undefined;
}

/** Starts the HAProxy tunnel (node-1 → node-2 → bench-direct/server) for HTTP and iperf3. */
function startTunnel(lab: Lab, dir: string): { client: RunningHaproxy; server: RunningHaproxy; entry: string } {
  const [n1, n2] = [lab.plan.nodes.find((n) => n.name === 'node-1')!, lab.plan.nodes.find((n) => n.name === 'node-2')!];
  const server = lab.podIp('bench-direct/server');
  const cfg = writeTunnelConfigs(dir, [
    { clientSide: { listen: n1.ip, port: PORTS.haproxyHttp }, serverSide: { listen: n2.ip, port: PORTS.haproxyTlsHttp }, target: { ip: server, port: PORTS.http } },
    { clientSide: { listen: n1.ip, port: PORTS.haproxyIperf }, serverSide: { listen: n2.ip, port: PORTS.haproxyTlsIperf }, target: { ip: server, port: PORTS.iperf } },
  ]);
  const s = startHaproxy(n2.netns, cfg.server, join(lab.runDir, 'logs', 'bench-haproxy-server.log'));
  const c = startHaproxy(n1.netns, cfg.client, join(lab.runDir, 'logs', 'bench-haproxy-client.log'));
  return { client: c, server: s, entry: n1.ip };
}

/** Checks one request answers 200 on the path before measuring it. */
async function probe(exec: PodExec, p: PathDef, url: string): Promise<string | undefined> {
  for (let i = 0; i < 20; i++) {
    const r = await exec(p.client, ['curl', '-s', '-m', '3', '-o', '/dev/null', '-w', '%{http_code}', url], { allowFail: true, timeoutMs: 6000 });
    if (r.stdout.trim() === '200') return undefined;
    if (i === 19) return `${url} from ${p.client} answered ${r.stdout.trim() || 'nothing'} ${r.stderr.trim().slice(0, 200)}`;
    await sleep(250);
  }
  return undefined;
}

/** Runs the control-plane bench (bench/control-plane.ts) as a child process and reads its figures. */
async function controlPlane(log: (l: string) => void): Promise<ControlPlaneResult & { raw: string }> {
  log('control plane: 10,000 pods / 1,000 services / 100 proxies (bench/control-plane.ts)');
  const r = await promisify(execFile)(process.execPath, ['--expose-gc', join(REPO_ROOT, 'bench', 'control-plane.ts')], { cwd: REPO_ROOT, timeout: 600_000, maxBuffer: 4 * MB });
  return { ...parseControlPlane(r.stdout), raw: r.stdout.trim() };
}

type Figures = Map<string, Record<string, number[]>>;
function push(f: Figures, path: string, key: string, v: number): void {
  let rec = f.get(path);
  if (rec === undefined) f.set(path, (rec = {}));
  (rec[key] ??= []).push(v);
}

/** The accounted groups of a path that exist, by key → root pid. */
function accountGroups(p: PathDef, all: ReadonlyMap<string, number>): Map<string, number> {
  return new Map(p.account.map(procKey).filter((k) => all.has(k)).map((k) => [k, all.get(k)!]));
}

function largestRssMb(s: ReadonlyMap<string, GroupSample>, field: 'rssBytes' | 'hwmBytes' | 'pssBytes'): number {
  const v = [...s.values()].map((g) => g[field]);
  return v.length === 0 ? Number.NaN : Math.max(...v) / MB;
}

/** Runs the whole bench and writes the report; returns it. The lab is always torn down. */
export async function runBench(o: BenchOptions, cleanups: (() => Promise<unknown>)[]): Promise<BenchReport> {
  const startedAt = new Date().toISOString();
  const mach = machine();
  const notes: string[] = [];
  const extra: Record<string, unknown> = {};
  o.log(`lab ${o.name}: up from ${o.specFile}`);
  // Registered before `up` so Ctrl-C during start-up also removes whatever was made so far.
  cleanups.push(async () => {
    if (!existsSync(join(RUN_ROOT, o.name, 'record.json'))) return;
    // The mesh's logs outlive the lab, for reading what the agents did during the run.
    const logs = join(RUN_ROOT, o.name, 'logs');
    if (existsSync(logs)) {
      rmSync(LOG_COPY_DIR, { recursive: true, force: true });
      cpSync(logs, LOG_COPY_DIR, { recursive: true, filter: (f) => !f.endsWith('.exit') });
      o.log(`lab logs kept in ${LOG_COPY_DIR}`);
    }
    o.log(`lab ${o.name}: down`);
    await Lab.down(o.name);
  });
  // The lab starts the mesh from the build through the environment; put it back afterwards.
  if (!o.source && o.paths.some((p) => p.requires.includes('mesh'))) {
    const before = process.env['RONDO_MESH_DIST'];
    process.env['RONDO_MESH_DIST'] = buildMesh(o.log);
    cleanups.push(() => {
      if (before === undefined) delete process.env['RONDO_MESH_DIST'];
      else process.env['RONDO_MESH_DIST'] = before;
      return Promise.resolve();
    });
  }
  const { lab, meshError } = await upLab(o);
  const exec: PodExec = (pod, argv, x) => lab.exec(pod, argv, x);
  for (const s of ['server', 'server-local']) {
    for (const ns of ['bench-direct', 'bench-mesh']) {
      await lab.waitForPort(`${ns}/${s}`, PORTS.http, 20_000);
      await lab.waitForPort(`${ns}/${s}`, PORTS.iperf, 20_000);
    }
  }

  const missing: Partial<Record<Requirement, string>> = {};
  if (o.paths.some((p) => p.requires.includes('mesh'))) {
    const why = await checkMesh(lab, o, meshError);
    if (why !== undefined) missing.mesh = why;
  }
  const groups = meshGroups(lab);
  if (!groups.has('waypoint')) missing.waypoint = 'no waypoint runs in the lab (waypoint/main.ts and its lab wiring do not exist yet)';
  let haproxyEntry = '';
  if (o.paths.some((p) => p.requires.includes('haproxy'))) {
    const dir = mkdtempSync(join(tmpdir(), 'rondo-bench-haproxy-'));
    cleanups.push(() => { rmSync(dir, { recursive: true, force: true }); return Promise.resolve(); });
    try {
      const t = startTunnel(lab, dir);
      cleanups.push(() => Promise.all([t.client.stop(), t.server.stop()]));
      groups.set('haproxy/client', t.client.pid);
      groups.set('haproxy/server', t.server.pid);
      haproxyEntry = t.entry;
    } catch (e) {
      missing.haproxy = `the HAProxy tunnel did not start: ${errorMessage(e)}`;
    }
  }
  const lookup = { podIp: (r: string) => lab.podIp(r), serviceIp: (r: string) => lab.serviceIp(r), haproxyEntry: () => haproxyEntry };

  const skipped: NonNullable<BenchReport['skipped']> = [];
  const paths: PathDef[] = [];
  for (const p of o.paths) {
    let why = unavailableReason(p, missing);
    if (why === undefined) {
      const t = resolveTarget(p, lookup);
      why = await probe(exec, p, `http://${t.ip}:${t.httpPort}/bytes/1024`);
    }
    if (why === undefined) paths.push(p);
    else {
      skipped.push({ name: p.name, label: p.label, reason: why });
      o.log(`path ${p.name}: not measured: ${why}`);
    }
  }

  // Idle memory once the lab is quiet: every mesh process, and each path's largest proxy.
  o.log(`idle memory in ${settleMs(o) / 1000} s (steady state)`);
  await sleep(settleMs(o));
  const idle = sampleGroups(groups);
  const mem = (g: GroupSample): { rssMB: number; pssMB: number; processes: number } => ({ rssMB: Math.round((g.rssBytes / MB) * 10) / 10, pssMB: Math.round((g.pssBytes / MB) * 10) / 10, processes: g.pids.length });
  extra['Idle memory per mesh/proxy process group (RSS summed over its processes; PSS counts shared pages once)'] = Object.fromEntries([...idle].map(([k, g]) => [k, mem(g)]));

  const figures: Figures = new Map();
  const perProcess: Record<string, Record<string, number[]>> = {};
  const loads: (LoadName | 'bulk')[] = ['c1', 'c16', 'conn', 'bulk'];
  for (let round = 0; round < o.rounds; round++) {
    for (const load of loads) {
      for (const p of interleave(paths, round)) {
        const t = resolveTarget(p, lookup);
        const acc = accountGroups(p, groups);
        o.log(`round ${round + 1}/${o.rounds} ${load} ${p.name}`);
        const before = sampleGroups(acc);
        try {
          if (load === 'bulk') {
            const gbps = await runIperf(exec, p.client, t.ip, t.iperfPort, o.seconds);
            push(figures, p.name, 'bulk_gbps', gbps);
            const cpu = [...cpuDelta(before, sampleGroups(acc)).values()].reduce((a, b) => a + b, 0);
            if (acc.size > 0 && gbps > 0) push(figures, p.name, 'cpu_s_per_gb', cpu / ((gbps * o.seconds) / 8));
            continue;
          }
          const r = await runWrk(exec, p.client, load, `http://${t.ip}:${t.httpPort}/bytes/1024`, o.seconds);
          const after = sampleGroups(acc);
          const d = cpuDelta(before, after);
          const cpu = [...d.values()].reduce((a, b) => a + b, 0);
          const sys = [...cpuDelta(before, after, 'sysSeconds').values()].reduce((a, b) => a + b, 0);
          if (r.errors > 0) notes.push(`round ${round + 1} ${load} ${p.name}: ${r.errors} wrk errors in ${r.requests} requests`);
          if (load === 'conn') {
            push(figures, p.name, 'conn_per_s', r.rps);
            if (acc.size > 0) push(figures, p.name, 'cpu_us_per_conn', (cpu * 1e6) / r.requests);
            continue;
          }
          const sfx = load === 'c1' ? 'c1' : 'c16';
          push(figures, p.name, `rps_${sfx}`, r.rps);
          push(figures, p.name, `p50_${sfx}_ms`, r.latency.p50 / 1000);
          push(figures, p.name, `p99_${sfx}_ms`, r.latency.p99 / 1000);
          push(figures, p.name, `p999_${sfx}_ms`, r.latency.p999 / 1000);
          if (load === 'c1' && acc.size > 0 && p.hops > 0) push(figures, p.name, 'cpu_us_per_req_hop_c1', (cpu * 1e6) / r.requests / p.hops);
          if (load === 'c16' && acc.size > 0) {
            push(figures, p.name, 'cpu_us_per_req_c16', (cpu * 1e6) / r.requests);
            if (cpu > 0) push(figures, p.name, 'kernel_share_c16_pct', (100 * sys) / cpu);
            if (p.hops > 0) push(figures, p.name, 'cpu_us_per_req_hop_c16', (cpu * 1e6) / r.requests / p.hops);
            for (const [k, v] of d) ((perProcess[p.name] ??= {})[k] ??= []).push((v * 1e3 * 1000) / r.requests);
          }
        } catch (e) {
          notes.push(`round ${round + 1} ${load} ${p.name} failed: ${errorMessage(e)}`);
          o.log(`  failed: ${errorMessage(e)}`);
        }
      }
    }
  }
  extra['CPU ms per 1,000 requests at c=16, per process (median)'] = Object.fromEntries(Object.entries(perProcess).map(([path, procs]) => [
    path, Object.fromEntries(Object.entries(procs).map(([k, v]) => [k, Math.round(summarize(v).median * 100) / 100])),
  ]));

  // Memory with many idle connections open through each proxied path, then peak RSS.
  const heldBefore = new Set<string>();
  for (const p of paths) {
    const acc = accountGroups(p, groups);
    if (acc.size === 0) continue;
    const shared = [...acc.keys()].filter((k) => heldBefore.has(k));
    // A process does not hand its heap back after the connections close: say so rather than hide it.
    if (shared.length > 0) notes.push(`${p.name}: memory with ${o.heldConnections} connections read after an earlier path held as many through ${shared.join(', ')}; its figure includes what that left behind`);
    for (const k of acc.keys()) heldBefore.add(k);
    const idleOfPath = new Map([...idle].filter(([k]) => acc.has(k)));
    push(figures, p.name, 'rss_idle_mb', largestRssMb(idleOfPath, 'rssBytes'));
    push(figures, p.name, 'pss_idle_mb', largestRssMb(idleOfPath, 'pssBytes'));
    const t = resolveTarget(p, lookup);
    try {
      o.log(`${p.name}: holding ${o.heldConnections} idle connections`);
      // Read in the steady state of holding them (settleMs).
      const { held, result } = await holdConnections(lab.pod(p.client).netns, t.ip, t.httpPort, o.heldConnections, async () => { await sleep(settleMs(o)); return sampleGroups(acc); });
      if (held < o.heldConnections) notes.push(`${p.name}: only ${held} of ${o.heldConnections} connections opened`);
      push(figures, p.name, 'rss_1k_conns_mb', largestRssMb(result, 'rssBytes'));
      push(figures, p.name, 'pss_1k_conns_mb', largestRssMb(result, 'pssBytes'));
    } catch (e) {
      notes.push(`${p.name}: holding connections failed: ${errorMessage(e)}`);
    }
    push(figures, p.name, 'peak_rss_mb', largestRssMb(sampleGroups(acc), 'hwmBytes'));
  }
  const peak = sampleGroups(groups);
  extra['Peak RSS over the run (MB)'] = Object.fromEntries([...peak].map(([k, s]) => [k, Math.round((s.hwmBytes / MB) * 10) / 10]));

  const results: PathResult[] = paths.map((p) => ({
    name: p.name, label: p.label,
    figures: Object.fromEntries(Object.entries(figures.get(p.name) ?? {}).map(([k, v]) => [k, summarize(v)])),
  }));

  // The lab is torn down before the control-plane bench so its idle processes do not share the CPU.
  await runCleanups(cleanups, o.log);
  let cp: (ControlPlaneResult & { raw: string }) | undefined;
  if (o.controlPlane) {
    try {
      cp = await controlPlane(o.log);
      const { raw, ...figs } = cp;
      extra['Control plane (bench/control-plane.ts)'] = { ...figs, output: raw.split('\n') };
    } catch (e) {
      notes.push(`control-plane bench failed: ${errorMessage(e)}`);
    }
  } else notes.push('control-plane bench not run (--quick or --no-control-plane)');
  notes.push('Absolute numbers drift on this shared machine; compare ratios measured in the same run.');
  notes.push(`Memory (idle, 1,000 connections) is read in the steady state, ${settleMs(o) / 1000} s after the lab went quiet or the last connection opened; peak RSS covers the loads.`);

  const report: BenchReport = {
    startedAt, finishedAt: new Date().toISOString(), machine: { ...mach, 'load average at end': loadavg().map((x) => x.toFixed(1)).join(' '), 'seconds per measurement': o.seconds,
      'mesh runs from': o.source ? 'the .ts sources (--source)' : 'a production build (tsc, JavaScript)' },
    rounds: o.rounds, figures: [...FIGURES], paths: results, skipped, extra, targets: checkTargets(results, cp), notes,
  };
  writeReport(o.out, report);
  o.log(`report: ${join(o.out, 'latest.md')}`);
  return report;
}

/** Runs and empties the cleanup list, last registered first; a failing step is logged and the rest still run. */
export async function runCleanups(cleanups: (() => Promise<unknown>)[], log: (l: string) => void): Promise<void> {
  for (const c of cleanups.splice(0).reverse()) {
    try { await c(); } catch (e) { log(`cleanup: ${errorMessage(e)}`); }
  }
}

async function main(): Promise<void> {
  const log = (l: string): void => { process.stderr.write(`bench: ${l}\n`); };
  let opts: BenchOptions;
  try {
    opts = { ...parseBenchArgs(process.argv.slice(2)), log };
  } catch (e) {
    process.stderr.write(`bench: ${errorMessage(e)}\n`);
    process.exit(2);
  }
  ensureDeps();
  const cleanups: (() => Promise<unknown>)[] = [];
  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> => (cleaning ??= runCleanups(cleanups, log));
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      log(`${sig}: tearing down`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  try {
    const r = await runBench(opts, cleanups);
    for (const t of r.targets) log(`target ${t.figure}: ${t.measured} (${t.target}) ${t.met === undefined ? '—' : t.met ? 'met' : 'NOT met'}`);
  } catch (e) {
    log(`failed: ${errorMessage(e)}`);
    process.exitCode = 1;
  } finally {
    await cleanup();
  }
}

if (import.meta.main) await main();

/** Names of every known path (for --help texts and tests). */
export const PATH_NAMES = PATHS.map((p) => p.name);
