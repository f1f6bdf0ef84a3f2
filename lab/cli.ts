/** `rondo lab …`: argument parsing and human output over the Lab API. */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RondoError } from '../common/errors.ts';
import { Lab, listLabs, REPO_ROOT, resolveCommand } from './lab.ts';
import type { ApplyResult, LabStatus } from './lab.ts';
import { RUN_ROOT } from './record.ts';
import { PORTS } from '../common/ports.ts';

/** The demo spec `rondo lab up --demo` uses. */
export const DEMO_SPEC = join(REPO_ROOT, 'lab', 'specs', 'demo.yaml');

const USAGE = `usage: rondo lab <subcommand>
  up [-f SPEC] [--name L] [--demo]   build a lab (default spec: the demo) and leave it running
  down [--name L]                    remove everything the lab made
  status [--name L] [--json]         nodes, pods (running/crashed), services, waypoints, controller and proxies
  exec [--name L] POD -- CMD...      run a command inside a pod (POD: name, ns/name or deployment),
                                     or in node-N, bridge or controller (their netns)
  logs [--name L] [-f] POD           a pod's output
  apply [--name L] -f FILE           add or change namespace labels and mesh resources; a Gateway of
                                     class rondo-waypoint starts its waypoint pod and waits for it
  delete [--name L] -f FILE          remove mesh resources (a waypoint Gateway: its pod too)
  uninstall-node [--name L] NODE...  stop the node's agent and remove its capture rules and sets
                                     (the node's pods then talk plaintext, as without the DaemonSet)
`;

/** Usage mistakes (exit code 2). */
export class UsageError extends RondoError {
  constructor(message: string) {
    super('RONDO_E_USAGE', `${message}\n${USAGE}`);
    this.name = 'UsageError';
  }
}

/** Parsed flags and positionals of a subcommand. */
export interface ParsedArgs { flags: Map<string, string | true>; positional: string[]; rest: string[] }

/** Parses `--flag value`, `-f value`, boolean flags and a `--` tail. */
export function parseArgs(args: string[], valued: readonly string[], booleans: readonly string[]): ParsedArgs {
  const flags = new Map<string, string | true>();
  const positional: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') return { flags, positional, rest: args.slice(i + 1) };
    if (a.startsWith('-') && a.length > 1) {
      const [k, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
      if (valued.includes(k)) {
        const v = inline ?? args[++i];
        if (v === undefined) throw new UsageError(`${k} needs a value`);
        flags.set(k, v);
      } else if (booleans.includes(k)) flags.set(k, true);
      else throw new UsageError(`unknown option ${k}`);
    } else positional.push(a);
  }
  return { flags, positional, rest: [] };
}

/** The lab a command means: --name, else the only running lab, else the demo's name. */
export function pickLab(flag: string | true | undefined, runRoot = RUN_ROOT): string {
  if (typeof flag === 'string') return flag;
  const labs = listLabs(runRoot);
  if (labs.length === 1) return labs[0]!;
  if (labs.length === 0) throw new RondoError('RONDO_E_LAB_NOT_FOUND', 'no lab is running (start one with `rondo lab up`)');
  throw new RondoError('RONDO_E_LAB_AMBIGUOUS', `several labs are running (${labs.join(', ')}): choose one with --name`);
}

const out = (s: string): void => { process.stdout.write(s.endsWith('\n') ? s : s + '\n'); };

/** Formats `status` as a few aligned tables. */
export function formatStatus(s: LabStatus): string {
  const table = (rows: string[][]): string[] => {
    const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
    return rows.map((r) => r.map((c, i) => c.padEnd(w[i]!)).join('  ').trimEnd());
  };
  const lines = [`lab ${s.name}  (run dir ${s.runDir}, state ${s.runDir}/state)`, ''];
  lines.push(...table([['NODE', 'UNDERLAY', 'POD CIDR', 'NETNS'], ...s.nodes.map((n) => [n.name, n.ip, n.podCIDR, n.netns])]), '');
  lines.push(...table([['POD', 'NODE', 'IP', 'STATE', 'NETNS'], ...s.pods.map((p) => [`${p.namespace}/${p.name}`, p.node, p.ip,
    p.state === 'running' ? 'running' : `crashed${p.exitCode !== undefined ? ` (exit ${p.exitCode})` : ''}`, p.netns])]), '');
  if (s.services.length > 0) lines.push(...table([['SERVICE', 'CLUSTER-IP', 'PORTS', 'READY ENDPOINTS'], ...s.services.map((v) => [`${v.namespace}/${v.name}`, v.clusterIP, v.ports, String(v.endpoints)])]), '');
  if (s.waypoints !== undefined && s.waypoints.length > 0) {
    lines.push(...table([['WAYPOINT', 'POD', 'NODE', 'IP', 'SERVICE IP', 'PHASE', 'PROCESS', 'LOG'],
      ...s.waypoints.map((w) => [`${w.namespace}/${w.gateway}`, w.pod, w.node, w.ip, w.serviceIP, w.phase, w.state, w.log])]), '');
  }
  if (s.mesh.length === 0) lines.push('mesh: not running (spec.mesh is false or its parts are not built yet)');
  else lines.push(...table([['MESH PROCESS', 'STATE', 'LOG'], ...s.mesh.map((m) => [m.name, m.state, m.log])]));
  if (s.proxies !== undefined) lines.push('', 'connected proxies:', JSON.stringify(s.proxies, null, 1));
  if (s.proxiesError !== undefined) lines.push('', `connected proxies: unknown (${s.proxiesError})`);
  if (s.invalid !== undefined && s.invalid.length > 0) {
    lines.push('', 'INVALID RESOURCES (left out of the mesh config; fix and re-apply):');
    for (const r of s.invalid) lines.push(`  ${r.kind} ${r.namespace !== undefined ? `${r.namespace}/` : ''}${r.name}: ${r.reason}`);
  }
  return lines.join('\n');
}

function printResults(rs: ApplyResult[]): number {
  for (const r of rs) out(`${r.resource} ${r.outcome}${r.message !== undefined ? `: ${r.message}` : ''}`);
  return rs.some((r) => r.outcome === 'rejected') ? 1 : 0;
}

function readSpecFile(file: string): string {
  if (!existsSync(file)) throw new RondoError('RONDO_E_CONFIG', `file not found: ${file}`);
  return readFileSync(file, 'utf8');
}

/** The netns of a node (`node-1`), of the underlay bridge (`bridge`) or of the controller, if `target` names one. */
export function infraNetns(lab: Lab, target: string): string | undefined {
  if (target === 'bridge') return lab.plan.bridge.netns;
  if (target === 'controller') return lab.plan.controller.netns;
  return lab.plan.nodes.find((n) => n.name === target)?.netns;
}

/** Hints printed after `up`. */
export function tryThis(lab: Lab): string {
  const names = lab.plan.pods.map((p) => p.deployment);
  const svc = lab.plan.services.find((x) => x.name === 'backend') ?? lab.plan.services[0];
  const tgt = svc !== undefined ? `${svc.name}.${svc.namespace}:${svc.ports[0]?.port ?? 80}` : undefined;
  const n = lab.name === 'rondo' ? '' : ` --name ${lab.name}`;
  return [
    `lab ${lab.name} is up: ${lab.plan.nodes.length} nodes, ${lab.plan.pods.length} pods, ${lab.plan.services.length} services; it stays up until \`rondo lab down${n}\`.`,
    '', 'try:',
    `  node cli/rondo.ts lab status${n}`,
    ...(tgt !== undefined && names.includes('frontend') ? [`  node cli/rondo.ts lab exec${n} frontend -- curl -s ${tgt}/   # a call inside the mesh (HBONE, mTLS)`] : []),
    ...(tgt !== undefined && names.includes('client') ? [`  node cli/rondo.ts lab exec${n} client -- curl -s ${tgt}/     # from outside the mesh: refused (STRICT mTLS)`] : []),
    `  node cli/rondo.ts lab exec${n} node-1 -- curl -s localhost:${PORTS.proxyHealth}/metrics   # the agent's Istio metrics`,
    `  node cli/rondo.ts lab logs${n} ${names[0] ?? 'POD'}`,
    `  node cli/rondo.ts lab apply${n} -f FILE   # policies, routes, namespace labels`,
    `  node cli/rondo.ts lab down${n}            # or: npm stop`,
    `  state dir (what the controller reads): ${lab.stateDir}`,
  ].join('\n');
}

/** Entry point of `rondo lab`. */
export async function runLabCli(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'up': {
      const a = parseArgs(rest, ['-f', '--file', '--name'], ['--demo']);
      const f = a.flags.get('-f') ?? a.flags.get('--file');
      const file = typeof f === 'string' ? f : DEMO_SPEC;
      const name = a.flags.get('--name');
      const lab = await Lab.upFromFile(file, { onProgress: (l) => out(`.. ${l}`), ...(typeof name === 'string' ? { name } : {}) });
      const s = await lab.status();
      const crashed = s.pods.filter((p) => p.state === 'crashed');
      out(tryThis(lab));
      for (const p of crashed) out(`warning: pod ${p.namespace}/${p.name} already exited; see ${p.log}`);
      return 0;
    }
    case 'down': {
      const a = parseArgs(rest, ['--name'], []);
      const name = pickLab(a.flags.get('--name'));
      const r = await Lab.down(name);
      out(`lab ${name} removed (${r.removed.length} items: processes, namespaces, /etc/netns entries)`);
      return 0;
    }
    case 'status': {
      const a = parseArgs(rest, ['--name'], ['--json']);
      const s = await Lab.open(pickLab(a.flags.get('--name'))).status();
      out(a.flags.get('--json') === true ? JSON.stringify(s, null, 1) : formatStatus(s));
      return 0;
    }
    case 'exec': {
      const a = parseArgs(rest, ['--name'], []);
      const [pod] = a.positional;
      if (pod === undefined || a.rest.length === 0) throw new UsageError('exec needs a pod and a command after --');
      const lab = Lab.open(pickLab(a.flags.get('--name')));
      // A node name, `bridge` or `controller` runs in that netns (metrics, tcpdump, iptables-save).
      const infra = infraNetns(lab, pod);
      const netns = infra ?? lab.pod(pod).netns;
      const env = infra !== undefined ? process.env : lab.podEnv(lab.pod(pod));
      const r = spawnSync('ip', ['netns', 'exec', netns, ...resolveCommand(a.rest)], { stdio: 'inherit', env });
      if (r.error !== undefined) throw new RondoError('RONDO_E_LAB_EXEC', `exec in ${netns} failed: ${r.error.message}`);
      return r.status ?? 1;
    }
    case 'logs': {
      const a = parseArgs(rest, ['--name'], ['-f', '--follow']);
      const [pod] = a.positional;
      if (pod === undefined) throw new UsageError('logs needs a pod');
      const file = Lab.open(pickLab(a.flags.get('--name'))).logPath(pod);
      if (a.flags.has('-f') || a.flags.has('--follow')) return spawnSync('tail', ['-n', '+1', '-F', file], { stdio: 'inherit' }).status ?? 0;
      if (existsSync(file)) process.stdout.write(readFileSync(file));
      return 0;
    }
    case 'apply':
    case 'delete': {
      const a = parseArgs(rest, ['--name', '-f', '--filename'], []);
      const f = a.flags.get('-f') ?? a.flags.get('--filename');
      if (typeof f !== 'string') throw new UsageError(`${sub} needs -f FILE`);
      const lab = Lab.open(pickLab(a.flags.get('--name')));
      return printResults(sub === 'apply' ? await lab.applyAsync(readSpecFile(f), f) : await lab.deleteAsync(readSpecFile(f), f));
    }
    case 'uninstall-node': {
      const a = parseArgs(rest, ['--name'], []);
      if (a.positional.length === 0) throw new UsageError('uninstall-node needs one or more node names');
      const lab = Lab.open(pickLab(a.flags.get('--name')));
      for (const node of a.positional) {
        await lab.uninstallNode(node);
        out(`${node}: agent stopped, capture rules and sets removed`);
      }
      return 0;
    }
    case undefined:
    case '-h':
    case '--help':
      out(USAGE);
      return sub === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown subcommand "${sub}"`);
  }
}
