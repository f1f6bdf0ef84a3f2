/**
 * The lab API used by the CLI, the end-to-end tests and the benchmarks: `Lab.up()` builds a
 * cluster from a spec, `Lab.open()` attaches to a running one, `Lab.down()` removes
 * everything recorded in its run directory (also after a crash).
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RondoError, errorMessage } from '../common/errors.ts';
import { parseLabSpec, readDocuments, parseUserResource, USER_KINDS, fieldError } from './spec.ts';
import type { LabSpec } from './spec.ts';
import { planLab, keyOf, hostsFile, resolvConf } from './plan.ts';
import type { LabPlan, PodPlan } from './plan.ts';
import { runCommand } from './run-command.ts';
import type { CommandRunner, CommandResult } from './run-command.ts';
import { RunRecord, RUN_ROOT, writeAtomic } from './record.ts';
import type { RecordEntry } from './record.ts';
import { addNetns, buildUnderlay, buildNode, buildPod, syncServices, listNetns } from './netns.ts';
import { startInNetns, startWrapped, processState, killGroup, isOurs } from './processes.ts';
import { StateWriter, stateFileName } from './state-writer.ts';
import { writeTokens, controllerArgv, agentArgv, httpGetInNetns, waitFor, hasEntry, meshPaths, MESH_PORTS, meshEntry, waypointArgv, addWaypointToken, removeWaypointToken, waypointTokenFile } from './mesh.ts';
import { isWaypointGateway, planWaypoint, waypointKey, waypointPodObject, waypointServiceObject, waypointSliceObject, withWaypoints } from './waypoint.ts';
import type { WaypointPlan } from './waypoint.ts';
import { withStateLock } from './state-lock.ts';
import type { KubeObject } from '../common/kube-object.ts';
import type { SourceDoc } from './spec.ts';
import { stringify } from 'yaml';

/** Root of this repository (the lab runs `node <repo>/...`). */
export const REPO_ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const ETC_NETNS = '/etc/netns';

/** Options shared by the lab entry points. */
export interface LabOptions {
  runRoot?: string; run?: CommandRunner; onProgress?: (line: string) => void; meshTimeoutMs?: number;
  /** Written to `<runDir>/owner-pid` first thing, so a test harness can sweep labs of dead test processes. */
  ownerPid?: number;
  /** Where `controller/main.ts` and `node-agent/main.ts` are looked up (default: this repo; tests use stand-ins). */
  meshRepo?: string;
  /** How often the watcher process checks pod liveness (default 1000 ms; 0: no watcher). */
  watchIntervalMs?: number;
  /** Where `waypoint/main.ts` is looked up for the spec's waypoint Gateways (default: `meshRepo`). */
  waypointRepo?: string;
}
/** Options of the calls that may start a waypoint (`applyAsync`, `deleteAsync`). */
export interface WaypointOptions {
  /** Where `waypoint/main.ts` is looked up (default: this repo; tests use stand-ins). */
  repo?: string;
  /** How long to wait for the waypoint's `/healthz/ready` (default 30 s). */
  timeoutMs?: number;
  /** How long a deleted waypoint may drain before SIGKILL (default 12 s). */
  graceMs?: number;
}
/** A waypoint the lab runs for a rondo-waypoint Gateway, as kept in `<runDir>/waypoints.json`. */
export interface WaypointEntry extends WaypointPlan {
  /** Pending until `/healthz/ready` answers, Running, Failed once the process exited (the watcher). */
  phase: 'Pending' | 'Running' | 'Failed';
  log: string; exitFile: string; tokenFile: string;
}
/** One waypoint in `status`. */
export interface WaypointStatus {
  namespace: string; gateway: string; pod: string; node: string; ip: string; serviceIP: string; netns: string;
  phase: WaypointEntry['phase']; state: 'running' | 'exited'; log: string;
}
/** One pod in `status`. */
export interface PodStatus { namespace: string; name: string; node: string; ip: string; netns: string; state: 'running' | 'crashed'; exitCode?: number; log: string }
/** What `status` shows. */
export interface LabStatus {
  name: string; runDir: string; nodes: { name: string; ip: string; podCIDR: string; netns: string }[]; pods: PodStatus[];
  services: { namespace: string; name: string; clusterIP: string; ports: string; endpoints: number }[];
  mesh: { role: string; name: string; state: 'running' | 'exited'; log: string }[];
  /** Waypoint pods of rondo-waypoint Gateways (absent from older callers' literals). */
  waypoints?: WaypointStatus[];
  proxies?: unknown; proxiesError?: string;
  /** Resources the controller left out as invalid (its /debug/invalid): the file source has no status to write. */
  invalid?: { kind: string; namespace?: string; name: string; reason: string }[];
}
/** Outcome of one resource of `apply` / `delete`. */
export interface ApplyResult { resource: string; outcome: 'created' | 'configured' | 'deleted' | 'unchanged' | 'not found' | 'rejected'; message?: string }

/** Fails unless the machine can build a lab: root, iproute2, iptables. */
export async function checkPrerequisites(run: CommandRunner, uid = process.getuid?.()): Promise<void> {
  if (uid !== 0) throw new RondoError('RONDO_E_LAB_NOT_ROOT', 'the lab needs root (network namespaces, veths, iptables): run it with sudo or as root');
  for (const [cmd, args] of [['ip', ['-V']], ['iptables-restore', ['--version']], ['curl', ['--version']]] as const) {
    const r = await run(cmd, args, { allowFail: true });
    if (r.code !== 0) throw new RondoError('RONDO_E_LAB_TOOL_MISSING', `${cmd} is missing or broken (${cmd} ${args.join(' ')} failed): install ${cmd === 'ip' ? 'iproute2' : cmd}`);
  }
}

/** The root namespace's IPv4 addresses (read only), to refuse clashing lab ranges. */
async function hostAddresses(run: CommandRunner): Promise<string[]> {
  const r = await run('ip', ['-j', '-4', 'addr', 'show'], { allowFail: true });
  try {
    const links = JSON.parse(r.stdout) as { addr_info?: { local?: string }[] }[];
    return links.flatMap((l) => (l.addr_info ?? []).map((a) => a.local ?? '')).filter((a) => a !== '' && !a.startsWith('127.'));
  } catch { return []; }
}

/** Names of the labs with a run directory. */
export function listLabs(runRoot = RUN_ROOT): string[] {
  if (!existsSync(runRoot)) return [];
  return readdirSync(runRoot).filter((n) => existsSync(join(runRoot, n, 'record.json'))).sort();
}

interface Saved { plan: LabPlan; uids: Record<string, string>; ready: Record<string, boolean> }

/** A running lab. */
export class Lab {
  readonly name: string;
  readonly runDir: string;
  readonly plan: LabPlan;
  readonly state: StateWriter;
  private readonly record: RunRecord;
  private readonly run: CommandRunner;
  private readonly uids: Map<string, string>;
  private ready: Record<string, boolean>;

  private constructor(runDir: string, saved: Saved, record: RunRecord, run: CommandRunner) {
    this.plan = saved.plan;
    this.name = saved.plan.name;
    this.runDir = runDir;
    this.record = record;
    this.run = run;
    this.uids = new Map(Object.entries(saved.uids));
    this.ready = saved.ready;
    this.state = new StateWriter(join(runDir, 'state'));
  }

  /** Directory of the lab's state files (the controller's `--files`). */
  get stateDir(): string { return this.state.dir; }

  /** Parses a spec file and brings the lab up. */
  static async upFromFile(file: string, o: LabOptions & { name?: string } = {}): Promise<Lab> {
    let text: string;
    try { text = readFileSync(file, 'utf8'); } catch (e) { throw new RondoError('RONDO_E_CONFIG', `cannot read lab spec ${file}: ${errorMessage(e)}`); }
    const spec = parseLabSpec(text, file);
    if (o.name !== undefined) spec.lab.name = o.name;
    return Lab.up(spec, o);
  }

  /** Builds the whole lab; on failure removes what it made and rethrows. */
  static async up(spec: LabSpec, o: LabOptions = {}): Promise<Lab> {
    const run = o.run ?? runCommand;
    const progress = o.onProgress ?? (() => undefined);
    if (!/^[a-z][a-z0-9]{0,7}$/.test(spec.lab.name)) throw new RondoError('RONDO_E_INVALID', `lab name "${spec.lab.name}": use a lowercase letter then up to 7 lowercase letters or digits`);
    await checkPrerequisites(run);
    const plan = planLab(spec, await hostAddresses(run));
    const runDir = join(o.runRoot ?? RUN_ROOT, plan.name);
    const ours = [plan.bridge.netns, plan.controller.netns, ...plan.nodes.map((n) => n.netns), ...plan.pods.map((p) => p.netns)];
    const existing = new Set(await listNetns(run));
    const clash = ours.find((n) => existing.has(n));
    if (clash !== undefined && !existsSync(join(runDir, 'record.json'))) {
      throw new RondoError('RONDO_E_LAB_CLASH', `network namespace ${clash} already exists and was not made by lab "${plan.name}": refusing to touch it; choose another lab name`);
    }
    const record = RunRecord.create(runDir, plan.name);
    if (o.ownerPid !== undefined) writeFileSync(join(runDir, 'owner-pid'), String(o.ownerPid));
    mkdirSync(join(runDir, 'logs'), { recursive: true });
    const uids = Object.fromEntries(plan.pods.map((p) => [keyOf(p), randomUUID()]));
    const ready = Object.fromEntries(plan.pods.map((p) => [keyOf(p), true]));
    const lab = new Lab(runDir, { plan, uids, ready }, record, run);
    lab.save();
    try {
      progress(`creating ${ours.length} network namespaces`);
      for (const ns of ours) {
        record.add({ kind: 'netns', name: ns });
        await addNetns(run, ns);
      }
      await buildUnderlay(run, plan);
      await Promise.all(plan.nodes.map((n) => buildNode(run, plan, n)));
      const nodeOf = new Map(plan.nodes.map((n) => [n.name, n]));
      await Promise.all(plan.pods.map((p) => buildPod(run, nodeOf.get(p.node)!, p)));
      lab.writeNames();
      lab.state.writeAll(plan, lab.uids, () => true);
      progress(`starting ${plan.pods.length} pods`);
      for (const p of plan.pods) lab.startPod(p);
      if (o.watchIntervalMs !== 0) lab.startWatcher(o.watchIntervalMs ?? 1000);
      if (plan.mesh) await lab.startMesh(progress, o.meshTimeoutMs ?? 30_000, o.meshRepo ?? REPO_ROOT);
      const wpRepo = o.waypointRepo ?? o.meshRepo ?? REPO_ROOT;
      for (const g of plan.extra.filter(isWaypointGateway)) {
        const why = lab.whyNoWaypoint(wpRepo);
        if (why !== undefined) { progress(`Gateway ${g.metadata.namespace ?? ''}/${g.metadata.name}: ${why}`); continue; }
        const w = await lab.createWaypoint(g, { repo: wpRepo, timeoutMs: o.meshTimeoutMs ?? 30_000 });
        progress(`waypoint ${waypointKey(w)}: pod ${w.pod.name} on ${w.pod.node} (${w.pod.ip}) ready`);
      }
      return lab;
    } catch (e) {
      progress(`up failed (${errorMessage(e)}); removing what was made`);
      await Lab.down(plan.name, { ...o, run });
      throw e;
    }
  }

  /** Attaches to a running lab by name. */
  static open(name: string, o: LabOptions = {}): Lab {
    const runDir = join(o.runRoot ?? RUN_ROOT, name);
    const record = RunRecord.load(runDir, name);
    const file = join(runDir, 'lab.json');
    if (!existsSync(file)) throw new RondoError('RONDO_E_LAB_NOT_FOUND', `lab "${name}" has a record but no ${file} (up crashed early?): run \`rondo lab down --name ${name}\``);
    return new Lab(runDir, JSON.parse(readFileSync(file, 'utf8')) as Saved, record, o.run ?? runCommand);
  }

  /**
   * Removes everything in the lab's record: processes (only if the pid is still the one
   * started), anything else running inside the lab's namespaces, the namespaces (which takes
   * their links and iptables rules with them), /etc/netns entries, then the run directory.
   */
  static async down(name: string, o: LabOptions = {}): Promise<{ removed: string[] }> {
    const run = o.run ?? runCommand;
    const runDir = join(o.runRoot ?? RUN_ROOT, name);
    const record = RunRecord.load(runDir, name);
    const removed: string[] = [];
    const procs = record.entries.filter((e): e is Extract<RecordEntry, { kind: 'process' }> => e.kind === 'process');
    await Promise.all(procs.map(async (p) => { if (isOurs(p)) { await killGroup(p); removed.push(`process ${p.name} (${p.pid})`); } }));
    const present = new Set(await listNetns(run));
    // Recorded links (waypoint veths) live in recorded namespaces and go with them.
    const namespaces = record.entries.filter((e) => e.kind === 'netns').map((e) => e.name).reverse();
    for (const ns of namespaces) {
      if (!present.has(ns)) continue;
      // Stray processes in our namespaces (e.g. from `rondo lab exec`) would keep them alive.
      const pids = await run('ip', ['netns', 'pids', ns], { allowFail: true });
      for (const pid of pids.stdout.split('\n').map(Number).filter((n) => n > 1)) {
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      }
      await run('ip', ['netns', 'del', ns]);
      removed.push(`netns ${ns}`);
    }
    for (const e of record.entries) {
      if (e.kind === 'etc-netns' && e.path.startsWith(`${ETC_NETNS}/${name}-`) && existsSync(e.path)) {
        rmSync(e.path, { recursive: true, force: true });
        removed.push(e.path);
      }
    }
    // /etc/netns is shared by every lab; drop it only once the last entry is gone.
    try { if (readdirSync(ETC_NETNS).length === 0) rmSync(ETC_NETNS, { recursive: true }); } catch { /* absent or in use */ }
    // A process that was just killed may still have a log write in flight: retry ENOTEMPTY.
    rmSync(runDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
    return { removed };
  }

  /** The pod for `ref`: `ns/name`, a pod name, or a deployment name (its first replica); waypoint pods too (deployment = Gateway name). */
  pod(ref: string): PodPlan {
    const pods = withWaypoints(this.plan, this.waypoints()).pods;
    const p = pods.find((x) => keyOf(x) === ref) ?? pods.find((x) => x.name === ref) ?? pods.find((x) => x.deployment === ref)
      ?? pods.find((x) => `${x.namespace}/${x.deployment}` === ref);
    if (p === undefined) throw new RondoError('RONDO_E_LAB_UNKNOWN_NAME', `no pod "${ref}" in lab ${this.name}; pods: ${pods.map(keyOf).join(', ')}`);
    return p;
  }

  /** IP of a pod. */
  podIp(ref: string): string { return this.pod(ref).ip; }

  /** ClusterIP of a service (`name` or `ns/name`). */
  serviceIp(ref: string): string {
    const s = this.plan.services.find((x) => keyOf(x) === ref || x.name === ref);
    if (s === undefined) throw new RondoError('RONDO_E_LAB_UNKNOWN_NAME', `no service "${ref}" in lab ${this.name}`);
    return s.clusterIP;
  }

  /** Log file of a pod (of a waypoint pod: its process's log). */
  logPath(ref: string): string {
    const p = this.pod(ref);
    return this.waypoints().find((w) => w.pod.netns === p.netns)?.log ?? join(this.runDir, 'logs', `${p.netns}.log`);
  }

  /** Environment of a pod's processes (contract). */
  podEnv(p: PodPlan): Record<string, string> {
    return {
      PATH: `${join(REPO_ROOT, 'node_modules', '.bin')}:${process.env['PATH'] ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'}`,
      HOME: process.env['HOME'] ?? '/root', LANG: 'C.UTF-8',
      ...p.env,
      POD_NAME: p.name, POD_NAMESPACE: p.namespace, POD_IP: p.ip, NODE_NAME: p.node, SERVICE_ACCOUNT: p.serviceAccount,
      APP: p.labels['app'] ?? p.deployment, APP_VERSION: p.labels['version'] ?? '', RONDO_LAB: this.name,
    };
  }

  /** Runs a command in a pod's netns (with its env and /etc/hosts) and collects its output. */
  exec(ref: string, argv: string[], o: { input?: string; timeoutMs?: number; allowFail?: boolean } = {}): Promise<CommandResult> {
    const p = this.pod(ref);
    const env = Object.entries(this.podEnv(p)).map(([k, v]) => `${k}=${v}`);
    return this.run('ip', ['netns', 'exec', p.netns, 'env', ...env, ...resolveCommand(argv)], o);
  }

  /** Runs a command in a node's netns. */
  execNode(node: string, argv: string[], o: { input?: string; timeoutMs?: number; allowFail?: boolean } = {}): Promise<CommandResult> {
    const n = this.plan.nodes.find((x) => x.name === node);
    if (n === undefined) throw new RondoError('RONDO_E_LAB_UNKNOWN_NAME', `no node "${node}" in lab ${this.name}`);
    return this.run('ip', ['netns', 'exec', n.netns, ...argv], o);
  }

  /**
   * Pod liveness; when it changed, rewrites the state dir's Pods/EndpointSlices and the
   * DNAT rules (the lab's watcher calls this every second, `status` on demand).
   */
  async refresh(): Promise<PodStatus[]> {
    return withStateLock(this.runDir, () => this.refreshLocked());
  }

  private async refreshLocked(): Promise<PodStatus[]> {
    const pods = this.plan.pods.map((p): PodStatus => {
      const e = this.procEntry(`pod/${keyOf(p)}`);
      const st = e === undefined ? { state: 'exited' as const } : processState(e, this.exitFile(p.netns));
      return {
        namespace: p.namespace, name: p.name, node: p.node, ip: p.ip, netns: p.netns, log: this.logPath(keyOf(p)),
        state: st.state === 'running' ? 'running' : 'crashed', ...(st.state === 'exited' && st.code !== undefined ? { exitCode: st.code } : {}),
      };
    });
    const ready = Object.fromEntries(pods.map((p) => [keyOf(p), p.state === 'running']));
    const podsChanged = Object.keys(ready).some((k) => ready[k] !== this.ready[k]);
    if (podsChanged) {
      this.ready = ready;
      this.save();
      this.state.writePods(this.plan, this.uids, (k) => ready[k] === true);
    }
    // A waypoint whose process exited is Failed (its endpoint not ready: agents fail closed
    // with a reason). The record is read again under the lock: `apply` may have just
    // (re)started the process. No process recorded yet: it is being started.
    const procs = RunRecord.load(this.runDir, this.name).entries;
    const waypoints = this.waypoints();
    const failed = waypoints.filter((w) => {
      const e = procs.find((x) => x.kind === 'process' && x.name === waypointProcessName(w));
      return e?.kind === 'process' && !isOurs(e) && w.phase !== 'Failed';
    });
    for (const w of failed) w.phase = 'Failed';
    // waypoints.json first: whoever sees the Pod Failed finds the entry Failed too.
    if (failed.length > 0) this.writeWaypoints(waypoints);
    for (const w of failed) this.writeWaypointObjects(w);
    if (podsChanged || failed.length > 0) await this.syncAllServices(waypoints);
    return pods;
  }

  /** Pods, services and mesh processes (brings the state dir and DNAT rules up to date first). */
  async status(): Promise<LabStatus> {
    const pods = await this.refresh();
    const mesh = this.record.entries.filter((e) => e.kind === 'process' && e.role !== 'pod' && e.role !== 'watcher' && e.role !== 'waypoint')
      .map((e) => e.kind === 'process' ? { role: e.role, name: e.name, state: isOurs(e) ? 'running' as const : 'exited' as const, log: e.log } : undefined)
      .filter((x) => x !== undefined);
    const out: LabStatus = {
      name: this.name, runDir: this.runDir, pods, mesh,
      nodes: this.plan.nodes.map((n) => ({ name: n.name, ip: n.ip, podCIDR: n.podCIDR, netns: n.netns })),
      services: this.plan.services.map((s) => ({
        namespace: s.namespace, name: s.name, clusterIP: s.clusterIP, ports: s.ports.map((p) => `${p.port}->${p.targetPort}`).join(','),
        endpoints: s.endpoints.filter((k) => this.ready[k] === true).length,
      })),
    };
    const procs = RunRecord.load(this.runDir, this.name).entries;
    out.waypoints = this.waypoints().map((w): WaypointStatus => {
      const e = procs.find((x) => x.kind === 'process' && x.name === waypointProcessName(w));
      return {
        namespace: w.namespace, gateway: w.gateway, pod: w.pod.name, node: w.pod.node, ip: w.pod.ip, serviceIP: w.service.clusterIP, netns: w.pod.netns,
        phase: w.phase, state: e?.kind === 'process' && isOurs(e) ? 'running' : 'exited', log: w.log,
      };
    });
    if (mesh.some((m) => m.role === 'controller')) {
      const r = await httpGetInNetns(this.run, this.plan.controller.netns, `http://${this.plan.controller.ip}:${MESH_PORTS.controllerHttp}/debug/proxies`);
      if (r.status === 200) {
        try { out.proxies = JSON.parse(r.body); } catch { out.proxiesError = 'controller /debug/proxies did not return JSON'; }
      } else out.proxiesError = `controller /debug/proxies answered ${r.status || 'nothing'}`;
      const inv = await httpGetInNetns(this.run, this.plan.controller.netns, `http://${this.plan.controller.ip}:${MESH_PORTS.controllerHttp}/debug/invalid`);
      if (inv.status === 200) {
        try { out.invalid = JSON.parse(inv.body) as NonNullable<LabStatus['invalid']>; } catch { /* shown as unknown: nothing listed */ }
      }
    }
    return out;
  }

  /**
   * Adds or changes Namespaces (labels) and mesh resources in the state dir; each resource
   * succeeds or fails alone. A Gateway of class rondo-waypoint (or one that has a waypoint)
   * is refused here: it starts or stops a process, which `applyAsync` (`rondo lab apply`) does.
   */
  apply(text: string, file: string): ApplyResult[] {
    return readDocuments(text, file).map((d) => this.applyDoc(d, true));
  }

  /**
   * `rondo lab apply`: `apply`, and a Gateway of class rondo-waypoint starts its waypoint pod
   * (as the Kubernetes reconciler will) and waits for its `/healthz/ready`; re-applying leaves
   * a running waypoint alone (and restarts one whose process exited); a Gateway changed to
   * another class loses its waypoint. A waypoint that cannot start is removed again and the
   * Gateway rejected (a new one is not stored, a changed one keeps its previous spec).
   */
  async applyAsync(text: string, file: string, o: WaypointOptions = {}): Promise<ApplyResult[]> {
    const out: ApplyResult[] = [];
    for (const d of readDocuments(text, file)) out.push(d.kind === 'Gateway' ? await this.applyGateway(d, o) : this.applyDoc(d, false));
    return out;
  }

  /** Removes mesh resources from the state dir; lab-made objects are refused, and Gateways with a waypoint (use `deleteAsync`). */
  delete(text: string, file: string): ApplyResult[] {
    return readDocuments(text, file).map((d) => {
      const r = this.checkDeletable(d);
      if (r.error !== undefined) return r.error;
      const o = r.obj;
      if (o.kind === 'Gateway' && this.waypointOf(o) !== undefined) {
        return { resource: resourceName(o), outcome: 'rejected', message: `${d.where} has a waypoint pod: delete it with \`rondo lab delete\` (await lab.deleteAsync()), which stops the waypoint too` };
      }
      return this.deleteObj(o);
    });
  }

  /** `rondo lab delete`: `delete`, and a Gateway's waypoint is stopped and removed with everything made for it. */
  async deleteAsync(text: string, file: string, o: WaypointOptions = {}): Promise<ApplyResult[]> {
    const out: ApplyResult[] = [];
    for (const d of readDocuments(text, file)) {
      const r = this.checkDeletable(d);
      if (r.error !== undefined) { out.push(r.error); continue; }
      const w = r.obj.kind === 'Gateway' ? this.waypointOf(r.obj) : undefined;
      const res = this.deleteObj(r.obj);
      if (w !== undefined) {
        try {
          await this.removeWaypoint(w, o);
          res.message = `waypoint pod ${w.pod.name} stopped and removed`;
        } catch (e) {
          out.push({ resource: res.resource, outcome: 'rejected', message: `deleted, but removing its waypoint failed: ${errorMessage(e)}` });
          continue;
        }
      }
      out.push(res);
    }
    return out;
  }

  /** The waypoints of this lab (`<runDir>/waypoints.json`). */
  waypoints(): WaypointEntry[] {
    const file = join(this.runDir, 'waypoints.json');
    if (!existsSync(file)) return [];
    return (JSON.parse(readFileSync(file, 'utf8')) as { waypoints: WaypointEntry[] }).waypoints;
  }

  /** The waypoint of a Gateway (`ns/name` or the object), if it has one. */
  waypointOf(g: string | { metadata: { namespace?: string; name: string } }): WaypointEntry | undefined {
    const key = typeof g === 'string' ? g : `${g.metadata.namespace ?? 'default'}/${g.metadata.name}`;
    return this.waypoints().find((w) => waypointKey(w) === key);
  }

  private applyDoc(d: SourceDoc, refuseWaypoints: boolean): ApplyResult {
    try {
      if (d.kind === 'Namespace') {
        const o = parseUserResource(d);
        const labels = { 'kubernetes.io/metadata.name': o.metadata.name, ...(o.metadata.labels ?? {}) };
        const existed = this.state.remove('Namespace', undefined, o.metadata.name) || this.plan.namespaces.some((n) => n.name === o.metadata.name);
        this.state.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: o.metadata.name, labels } });
        return { resource: `namespace/${o.metadata.name}`, outcome: existed ? 'configured' : 'created' };
      }
      if (!(USER_KINDS as readonly string[]).includes(d.kind)) {
        const why = ['Deployment', 'Service'].includes(d.kind) ? `${d.kind}s are part of the lab topology: put it in the lab spec and recreate the lab` : `the lab applies Namespace and ${USER_KINDS.join(', ')}`;
        throw fieldError(d, ['kind'], `cannot apply ${d.kind || 'a document without kind'}: ${why}`);
      }
      const o = parseUserResource(d);
      if (refuseWaypoints && o.kind === 'Gateway' && (isWaypointGateway(o) || this.waypointOf(o) !== undefined)) {
        throw fieldError(d, ['spec', 'gatewayClassName'], 'a rondo-waypoint Gateway starts or stops a waypoint pod: apply it with `rondo lab apply` (await lab.applyAsync())');
      }
      return { resource: resourceName(o), outcome: this.putUser(o) };
    } catch (e) {
      return { resource: d.where, outcome: 'rejected', message: errorMessage(e) };
    }
  }

  /** Writes a user resource; 'unchanged' when the state dir already holds exactly it. */
  private putUser(o: KubeObject): 'created' | 'configured' | 'unchanged' {
    const file = join(this.stateDir, stateFileName(o.kind, o.metadata.namespace, o.metadata.name));
    const before = existsSync(file) ? readFileSync(file, 'utf8') : undefined;
    if (before === stringify(o)) return 'unchanged';
    this.state.put(o);
    return before === undefined ? 'created' : 'configured';
  }

  private async applyGateway(d: SourceDoc, o: WaypointOptions): Promise<ApplyResult> {
    let resource = d.where;
    try {
      const g = parseUserResource(d);
      resource = resourceName(g);
      const file = join(this.stateDir, stateFileName(g.kind, g.metadata.namespace, g.metadata.name));
      const before = existsSync(file) ? readFileSync(file, 'utf8') : undefined;
      const existing = this.waypointOf(g);
      const outcome = this.putUser(g);
      if (!isWaypointGateway(g)) {
        if (existing === undefined) return { resource, outcome };
        await this.removeWaypoint(existing, o);
        return { resource, outcome, message: `no longer of class rondo-waypoint: waypoint pod ${existing.pod.name} stopped and removed` };
      }
      const repo = o.repo ?? REPO_ROOT;
      const why = this.whyNoWaypoint(repo);
      if (why !== undefined) return { resource, outcome, message: why };
      try {
        const w = existing === undefined ? await this.createWaypoint(g, o) : await this.ensureRunning(existing, o);
        const started = existing === undefined ? 'started' : w === existing ? 'running' : 'restarted';
        return { resource, outcome, message: `waypoint pod ${w.pod.name} on ${w.pod.node} (${w.pod.ip}) ${started}, ready` };
      } catch (e) {
        // The Gateway's spec says a waypoint runs: without one, go back to what was there.
        if (existing === undefined) {
          if (before === undefined) this.state.remove(g.kind, g.metadata.namespace, g.metadata.name);
          else writeAtomic(file, before);
        }
        throw e;
      }
    } catch (e) {
      return { resource, outcome: 'rejected', message: errorMessage(e) };
    }
  }

  /** Why a rondo-waypoint Gateway gets no waypoint here, or undefined when it does. */
  private whyNoWaypoint(repo: string): string | undefined {
    if (!this.plan.mesh) return 'stored; no waypoint started: the lab runs without the mesh (spec.mesh is false)';
    if (this.procEntry('controller') === undefined) return 'stored; no waypoint started: the lab has no controller (controller/main.ts was not found at up)';
    if (!hasEntry(repo, 'waypoint')) return `stored; no waypoint started: ${join(repo, 'waypoint', 'main.ts')} not found`;
    return undefined;
  }

  private checkDeletable(d: SourceDoc): { obj: KubeObject; error?: undefined } | { error: ApplyResult } {
    try {
      if (!(USER_KINDS as readonly string[]).includes(d.kind)) throw fieldError(d, ['kind'], `cannot delete ${d.kind || 'a document without kind'}: only ${USER_KINDS.join(', ')} can be deleted; use \`rondo lab down\` for the rest`);
      return { obj: parseUserResource(d) };
    } catch (e) {
      return { error: { resource: d.where, outcome: 'rejected', message: errorMessage(e) } };
    }
  }

  private deleteObj(o: KubeObject): ApplyResult {
    const gone = this.state.remove(o.kind, o.metadata.namespace, o.metadata.name);
    return { resource: resourceName(o), outcome: gone ? 'deleted' : 'not found' };
  }

  /**
   * Starts the waypoint of a rondo-waypoint Gateway: plans it (lab/waypoint.ts), writes its
   * Pod (Pending), Service and EndpointSlice (not ready) and its token, makes its netns and
   * veth like a planned pod's (each recorded first), starts the process and waits for its
   * readiness, then marks it Running. On failure everything made for it is removed again.
   */
  private async createWaypoint(g: KubeObject, o: WaypointOptions): Promise<WaypointEntry> {
    const namespace = g.metadata.namespace ?? 'default';
    const name = g.metadata.name;
    const logs = join(this.runDir, 'logs');
    const uid = randomUUID();
    const w = await withStateLock(this.runDir, () => {
      const list = this.waypoints();
      const tokenFile = waypointTokenFile(this.runDir, namespace, name);
      const command = waypointArgv({ node: process.execPath, repo: o.repo ?? REPO_ROOT, runDir: this.runDir, plan: this.plan, namespace, name, tokenFile });
      const e: WaypointEntry = {
        ...planWaypoint(this.plan, list, g, { uid, command }),
        phase: 'Pending', log: join(logs, `waypoint.${namespace}.${name}.log`), exitFile: join(logs, `waypoint.${namespace}.${name}.exit`), tokenFile,
      };
      this.writeWaypoints([...list, e]);
      this.writeWaypointObjects(e);
      addWaypointToken(this.runDir, namespace, name);
      return e;
    });
    try {
      await this.buildWaypointPod(w);
      await this.startWaypoint(w, o);
      return { ...w, phase: 'Running' };
    } catch (e) {
      await this.removeWaypoint(w, { graceMs: 2000 }).catch(() => undefined);
      throw e;
    }
  }

  /** A recorded waypoint whose process exited is started again (as kubelet restarts a container). */
  private async ensureRunning(w: WaypointEntry, o: WaypointOptions): Promise<WaypointEntry> {
    const e = this.procEntry(waypointProcessName(w));
    if (e !== undefined && isOurs(e)) return w;
    await this.startWaypoint(w, o);
    return { ...w, phase: 'Running' };
  }

  private async buildWaypointPod(w: WaypointEntry): Promise<void> {
    const node = this.plan.nodes.find((n) => n.name === w.pod.node)!;
    if ((await listNetns(this.run)).includes(w.pod.netns)) {
      if (!this.record.entries.some((e) => e.kind === 'netns' && e.name === w.pod.netns)) {
        throw new RondoError('RONDO_E_LAB_CLASH', `network namespace ${w.pod.netns} already exists and was not made by lab "${this.name}": refusing to touch it`);
      }
      await this.deleteNetns(w.pod.netns); // ours, left by a removal that failed half-way
    }
    this.record.add({ kind: 'netns', name: w.pod.netns });
    await addNetns(this.run, w.pod.netns);
    this.record.add({ kind: 'link', netns: node.netns, name: w.pod.hostVeth });
    await buildPod(this.run, node, w.pod);
    const dir = join(ETC_NETNS, w.pod.netns);
    this.record.add({ kind: 'etc-netns', path: dir });
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'hosts'), hostsFile(withWaypoints(this.plan, this.waypoints()), w.pod));
    writeFileSync(join(dir, 'resolv.conf'), resolvConf(w.pod));
  }

  /** Starts the waypoint process in its pod netns, waits for `/healthz/ready`, marks it Running. */
  private async startWaypoint(w: WaypointEntry, o: WaypointOptions): Promise<void> {
    const info = await withStateLock(this.runDir, () => {
      // Pending and the new process recorded in one step: the watcher never sees a
      // restarted waypoint's old, exited process as the current one.
      this.updateWaypoint(w.uid, (x) => { x.phase = 'Pending'; });
      rmSync(w.exitFile, { force: true });
      const p = startInNetns({ netns: w.pod.netns, argv: w.pod.command, env: this.waypointEnv(w), log: w.log, exitFile: w.exitFile, cwd: REPO_ROOT });
      this.record.replaceProcess({ kind: 'process', role: 'waypoint', name: waypointProcessName(w), ...p });
      return p;
    });
    const url = `http://${w.pod.ip}:${MESH_PORTS.agentHealth}/healthz/ready`;
    await waitFor({
      what: `waypoint ${waypointKey(w)} (${url})`, proc: info, timeoutMs: o.timeoutMs ?? 30_000,
      check: async () => (await httpGetInNetns(this.run, w.pod.netns, url, 1)).status === 200,
    });
    await withStateLock(this.runDir, async () => {
      const list = this.updateWaypoint(w.uid, (x) => { x.phase = 'Running'; });
      if (list !== undefined) await this.syncAllServices(list);
    });
  }

  /**
   * Removes a waypoint: its entry, Pod, Service, EndpointSlice and token first (agents stop
   * sending to it), then stops its process group (it may drain up to `graceMs`) and deletes
   * its veth, netns and /etc/netns entry; record entries go only once the thing is gone, so
   * `down` still finds whatever a failure left. The log stays until `down`.
   */
  private async removeWaypoint(w: WaypointEntry, o: WaypointOptions = {}): Promise<void> {
    await withStateLock(this.runDir, async () => {
      const list = this.waypoints().filter((x) => x.uid !== w.uid);
      this.writeWaypoints(list);
      this.state.remove('Pod', w.namespace, w.pod.name);
      this.state.remove('EndpointSlice', w.namespace, `${w.service.name}-lab`);
      this.state.remove('Service', w.namespace, w.service.name);
      removeWaypointToken(this.runDir, w.namespace, w.gateway);
      await this.syncAllServices(list);
    });
    const proc = this.procEntry(waypointProcessName(w));
    if (proc !== undefined) await killGroup(proc, o.graceMs ?? 12_000);
    this.record.remove((e) => e.kind === 'process' && e.name === waypointProcessName(w));
    const node = this.plan.nodes.find((n) => n.name === w.pod.node);
    // Deleting one end of a veth deletes both at once; a netns is torn down lazily, and a
    // waypoint made right after could not reuse the name of a veth still tearing down.
    if (node !== undefined) await this.run('ip', ['-n', node.netns, 'link', 'del', w.pod.hostVeth], { allowFail: true });
    this.record.remove((e) => e.kind === 'link' && e.name === w.pod.hostVeth && e.netns === node?.netns);
    if ((await listNetns(this.run)).includes(w.pod.netns)) await this.deleteNetns(w.pod.netns);
    this.record.remove((e) => e.kind === 'netns' && e.name === w.pod.netns);
    const dir = join(ETC_NETNS, w.pod.netns);
    rmSync(dir, { recursive: true, force: true });
    this.record.remove((e) => e.kind === 'etc-netns' && e.path === dir);
  }

  private async deleteNetns(ns: string): Promise<void> {
    const pids = await this.run('ip', ['netns', 'pids', ns], { allowFail: true });
    for (const pid of pids.stdout.split('\n').map(Number).filter((n) => n > 1)) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    await this.run('ip', ['netns', 'del', ns]);
  }

  /** Environment of a waypoint process: the agents' plus what a Deployment's downward API gives. */
  private waypointEnv(w: WaypointEntry): Record<string, string> {
    return {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/root', RONDO_LAB: this.name,
      POD_NAME: w.pod.name, POD_NAMESPACE: w.namespace, POD_IP: w.pod.ip, NODE_NAME: w.pod.node, SERVICE_ACCOUNT: w.pod.serviceAccount,
    };
  }

  /** Under the state lock: changes one waypoint entry and rewrites its objects; the new list, or undefined when it is gone. */
  private updateWaypoint(uid: string, change: (w: WaypointEntry) => void): WaypointEntry[] | undefined {
    const list = this.waypoints();
    const w = list.find((x) => x.uid === uid);
    if (w === undefined) return undefined;
    change(w);
    this.writeWaypoints(list);
    this.writeWaypointObjects(w);
    return list;
  }

  private writeWaypoints(list: readonly WaypointEntry[]): void {
    writeAtomic(join(this.runDir, 'waypoints.json'), JSON.stringify({ waypoints: list }, null, 1) + '\n');
  }

  /** Pod, Service and EndpointSlice of a waypoint as its phase says (ready only when Running). */
  private writeWaypointObjects(w: WaypointEntry): void {
    this.state.put(waypointPodObject(w, w.phase));
    this.state.put(waypointServiceObject(w));
    this.state.put(waypointSliceObject(w, w.phase === 'Running'));
  }

  /** LAB-SERVICES for the planned services and the waypoints' (a waypoint's endpoint counts when Running). */
  private async syncAllServices(waypoints: readonly WaypointEntry[]): Promise<void> {
    const running = new Set(waypoints.filter((w) => w.phase === 'Running').map((w) => keyOf(w.pod)));
    await syncServices(this.run, withWaypoints(this.plan, waypoints), (k) => this.ready[k] === true || running.has(k));
  }

  /** Waits until a TCP port accepts connections inside a pod's netns (for tests and the demo). */
  async waitForPort(ref: string, port: number, timeoutMs = 10_000): Promise<void> {
    const p = this.pod(ref);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.run('ip', ['netns', 'exec', p.netns, 'bash', '-c', `exec 3<>/dev/tcp/${p.ip}/${port}`], { allowFail: true, timeoutMs: 2000 });
      if (r.code === 0) return;
      if (Date.now() > deadline) throw new RondoError('RONDO_E_LAB_NOT_READY', `pod ${keyOf(p)} does not listen on ${p.ip}:${port} after ${timeoutMs / 1000}s; see ${this.logPath(keyOf(p))}`);
      await new Promise((r2) => setTimeout(r2, 100));
    }
  }

  /**
   * Stops a recorded mesh process (`controller`, `node-agent/<node>`) and starts it again with
   * the same command line and log (tests: agent restart), then waits for its readiness URL.
   * Waits for the whole process group to be gone, not only the recorded `sh` wrapper (which
   * dies on SIGTERM at once): an agent drains its connections first (`--drain-ms`, 10 s by
   * default) and holds its ports until then. `graceMs` (default 12 s) bounds that wait
   * before SIGKILL.
   */
  async restartMeshProcess(name: string, o: { timeoutMs?: number; repo?: string; graceMs?: number } = {}): Promise<void> {
    const e = this.procEntry(name);
    if (e === undefined || (e.role !== 'controller' && e.role !== 'node-agent')) {
      const known = this.record.entries.filter((x) => x.kind === 'process' && (x.role === 'controller' || x.role === 'node-agent')).map((x) => x.kind === 'process' ? x.name : '');
      throw new RondoError('RONDO_E_LAB_UNKNOWN_NAME', `no mesh process "${name}" in lab ${this.name}; known: ${known.join(', ') || 'none (is spec.mesh true?)'}`);
    }
    await killGroup(e, o.graceMs ?? 12_000);
    const repo = o.repo ?? REPO_ROOT;
    const env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/root', RONDO_LAB: this.name };
    const logs = join(this.runDir, 'logs');
    const timeoutMs = o.timeoutMs ?? 30_000;
    if (e.role === 'controller') {
      const ctl = startInNetns({
        netns: this.plan.controller.netns, env, cwd: REPO_ROOT, log: join(logs, 'controller.log'), exitFile: join(logs, 'controller.exit'),
        argv: controllerArgv({ node: process.execPath, repo, stateDir: this.stateDir, runDir: this.runDir, plan: this.plan }),
      });
      this.record.replaceProcess({ kind: 'process', role: 'controller', name, ...ctl });
      const url = `http://${this.plan.controller.ip}:${MESH_PORTS.controllerHttp}/healthz/ready`;
      await waitFor({ what: `controller (${url})`, proc: ctl, timeoutMs, check: async () => (await httpGetInNetns(this.run, this.plan.controller.netns, url, 1)).status === 200 });
      return;
    }
    const n = this.plan.nodes.find((x) => `node-agent/${x.name}` === name)!;
    const a = startInNetns({
      netns: n.netns, env, cwd: REPO_ROOT, log: join(logs, `agent-${n.name}.log`), exitFile: join(logs, `agent-${n.name}.exit`),
      argv: agentArgv({ node: process.execPath, repo, runDir: this.runDir, plan: this.plan, nodeName: n.name, tokenFile: join(meshPaths(this.runDir).tokenDir, `${n.name}.token`) }),
    });
    this.record.replaceProcess({ kind: 'process', role: 'node-agent', name, ...a });
    const url = `http://${n.ip}:${MESH_PORTS.agentHealth}/healthz/ready`;
    await waitFor({ what: `node agent ${n.name} (${url})`, proc: a, timeoutMs, check: async () => (await httpGetInNetns(this.run, n.netns, url, 1)).status === 200 });
  }

  /**
   * Takes the mesh off a node: stops its agent (SIGTERM: it drains, up to `graceMs`) and runs
   * `node-agent/main.ts --uninstall` in the node's netns, which removes every `RONDO-*` chain,
   * jump and `rondo-*` set (`rondo lab uninstall-node`). Enrolled pods on the node then talk
   * plaintext, as after deleting the DaemonSet. Returns what the uninstall logged.
   */
  async uninstallNode(node: string, o: { graceMs?: number; repo?: string } = {}): Promise<string> {
    const n = this.plan.nodes.find((x) => x.name === node);
    if (n === undefined) throw new RondoError('RONDO_E_LAB_UNKNOWN_NAME', `no node "${node}" in lab ${this.name}; known: ${this.plan.nodes.map((x) => x.name).join(', ')}`);
    const e = this.procEntry(`node-agent/${node}`);
    if (e !== undefined) await killGroup(e, o.graceMs ?? 12_000);
    const r = await this.run('ip', ['netns', 'exec', n.netns, process.execPath, meshEntry(o.repo ?? REPO_ROOT, 'node-agent'), '--uninstall'], { timeoutMs: 30_000 });
    return r.stdout;
  }

  /** Stops a recorded mesh process and waits for its whole group (SIGKILL after `graceMs`, default 12 s). */
  async stopMeshProcess(name: string, o: { graceMs?: number } = {}): Promise<void> {
    const e = this.procEntry(name);
    if (e === undefined) throw new RondoError('RONDO_E_LAB_UNKNOWN_NAME', `no process "${name}" in lab ${this.name}`);
    await killGroup(e, o.graceMs ?? 12_000);
  }

  /** Pid of a recorded process (`controller`, `node-agent/<node>`, `pod/<ns>/<name>`) while it runs, else undefined. */
  processPid(name: string): number | undefined {
    const e = this.procEntry(name);
    return e !== undefined && isOurs(e) ? e.pid : undefined;
  }

  private procEntry(name: string): Extract<RecordEntry, { kind: 'process' }> | undefined {
    const e = this.record.entries.find((x) => x.kind === 'process' && x.name === name);
    return e?.kind === 'process' ? e : undefined;
  }

  private exitFile(netns: string): string { return join(this.runDir, 'logs', `${netns}.exit`); }

  private save(): void {
    const saved: Saved = { plan: this.plan, uids: Object.fromEntries(this.uids), ready: this.ready };
    writeAtomic(join(this.runDir, 'lab.json'), JSON.stringify(saved) + '\n');
  }

  private writeNames(): void {
    for (const p of this.plan.pods) {
      const dir = join(ETC_NETNS, p.netns);
      this.record.add({ kind: 'etc-netns', path: dir });
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'hosts'), hostsFile(this.plan, p));
      writeFileSync(join(dir, 'resolv.conf'), resolvConf(p));
    }
  }

  private startPod(p: PodPlan): void {
    const info = startInNetns({
      netns: p.netns, argv: resolveCommand(p.command), env: this.podEnv(p), log: this.logPath(keyOf(p)), exitFile: this.exitFile(p.netns), cwd: REPO_ROOT,
    });
    this.record.replaceProcess({ kind: 'process', role: 'pod', name: `pod/${keyOf(p)}`, ...info });
  }

  private startWatcher(intervalMs: number): void {
    const logs = join(this.runDir, 'logs');
    const w = startWrapped({
      argv: [process.execPath, join(REPO_ROOT, 'lab', 'watch.ts'), this.name, String(intervalMs), dirname(this.runDir)],
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', RONDO_LAB: this.name }, cwd: REPO_ROOT, log: join(logs, 'watcher.log'), exitFile: join(logs, 'watcher.exit'),
    });
    this.record.add({ kind: 'process', role: 'watcher', name: 'watcher', ...w });
  }

  private async startMesh(progress: (l: string) => void, timeoutMs: number, repo: string): Promise<void> {
    if (!hasEntry(repo, 'controller')) {
      progress('mesh: controller/main.ts not found; the lab runs without the mesh');
      return;
    }
    const tokenFiles = writeTokens(this.runDir, this.plan);
    mkdirSync(meshPaths(this.runDir).ca, { recursive: true, mode: 0o700 });
    const env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/root', RONDO_LAB: this.name };
    const logs = join(this.runDir, 'logs');
    progress(`mesh: starting the controller in ${this.plan.controller.netns} (${this.plan.controller.ip})`);
    const ctl = startInNetns({
      netns: this.plan.controller.netns, env, cwd: REPO_ROOT, log: join(logs, 'controller.log'), exitFile: join(logs, 'controller.exit'),
      argv: controllerArgv({ node: process.execPath, repo, stateDir: this.stateDir, runDir: this.runDir, plan: this.plan }),
    });
    this.record.add({ kind: 'process', role: 'controller', name: 'controller', ...ctl });
    const ready = `http://${this.plan.controller.ip}:${MESH_PORTS.controllerHttp}/healthz/ready`;
    await waitFor({
      what: `controller (${ready})`, proc: ctl, timeoutMs,
      check: async () => existsSync(meshPaths(this.runDir).rootCert) && (await httpGetInNetns(this.run, this.plan.controller.netns, ready, 1)).status === 200,
    });
    if (!hasEntry(repo, 'node-agent')) {
      progress('mesh: node-agent/main.ts not found; no node agents started');
      return;
    }
    const agents = this.plan.nodes.map((n) => {
      const a = startInNetns({
        netns: n.netns, env, cwd: REPO_ROOT, log: join(logs, `agent-${n.name}.log`), exitFile: join(logs, `agent-${n.name}.exit`),
        argv: agentArgv({ node: process.execPath, repo, runDir: this.runDir, plan: this.plan, nodeName: n.name, tokenFile: tokenFiles.get(n.name)! }),
      });
      this.record.add({ kind: 'process', role: 'node-agent', name: `node-agent/${n.name}`, ...a });
      return { n, a };
    });
    progress(`mesh: started ${agents.length} node agents; waiting for them to be ready`);
    await Promise.all(agents.map(({ n, a }) => {
      const url = `http://${n.ip}:${MESH_PORTS.agentHealth}/healthz/ready`;
      return waitFor({ what: `node agent ${n.name} (${url})`, proc: a, timeoutMs, check: async () => (await httpGetInNetns(this.run, n.netns, url, 1)).status === 200 });
    }));
  }
}

/** Name of a waypoint's process in the record: `waypoint/<ns>/<gateway>`. */
export function waypointProcessName(w: { namespace: string; gateway: string }): string {
  return `waypoint/${waypointKey(w)}`;
}

function resourceName(o: KubeObject): string {
  return `${o.kind.toLowerCase()}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;
}

/** Maps `rondo-demo ...` to `node <repo>/lab/demo/main.ts ...` (contract); other commands run as written. */
export function resolveCommand(argv: string[]): string[] {
  if (argv[0] === 'rondo-demo') return [process.execPath, join(REPO_ROOT, 'lab', 'demo', 'main.ts'), ...argv.slice(1)];
  return argv;
}
