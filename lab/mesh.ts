/**
 * Optional mesh processes of a lab: the controller in the controller netns, one node agent
 * per node netns and the waypoints (lab/waypoint.ts), started with the command lines of the shared contract, only when their
 * entry points exist (they are written by other parts of the project).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RondoError, errorMessage } from '../common/errors.ts';
import { writeAtomic } from './record.ts';
import type { CommandRunner } from './run-command.ts';
import type { LabPlan } from './plan.ts';
import type { ProcessInfo } from './processes.ts';
import { isOurs } from './processes.ts';
import { PORTS } from '../common/ports.ts';

/** Ports of the contract. */
export const MESH_PORTS = { push: PORTS.controllerPush, controllerHttp: PORTS.controllerHttp, agentHealth: PORTS.proxyHealth } as const;

/** Where the mesh files of a lab live. */
export function meshPaths(runDir: string): { ca: string; rootCert: string; tokens: string; tokenDir: string } {
  return { ca: join(runDir, 'ca'), rootCert: join(runDir, 'ca', 'root-cert.pem'), tokens: join(runDir, 'tokens.json'), tokenDir: join(runDir, 'tokens') };
}

/** Writes tokens.json (token -> identity) and one token file per node; returns node -> token file. */
export function writeTokens(runDir: string, plan: LabPlan): Map<string, string> {
  const p = meshPaths(runDir);
  mkdirSync(p.tokenDir, { recursive: true, mode: 0o700 });
  const table: Record<string, unknown> = {};
  const files = new Map<string, string>();
  for (const n of plan.nodes) {
    const token = randomBytes(32).toString('hex');
    table[token] = { kind: 'node-agent', node: n.name };
    const file = join(p.tokenDir, `${n.name}.token`);
    writeFileSync(file, token + '\n', { mode: 0o600 });
    files.set(n.name, file);
  }
  writeFileSync(p.tokens, JSON.stringify(table, null, 1) + '\n', { mode: 0o600 });
  return files;
}

/** The deployables the lab starts. */
export type MeshPart = 'controller' | 'node-agent' | 'waypoint';

/**
 * The entry point of a mesh part: `<repo>/<part>/main.ts`, run through Node's type stripping,
 * or with `RONDO_MESH_DIST=<dir>` the compiled `<dir>/<part>/main.js` (`npm run build` writes
 * `dist/`), as a production image runs it. The bench uses the build: type stripping costs
 * the agent ~20 MB of RSS (docs/performance.md). The directory must sit inside the repo so
 * that `node_modules` resolves.
 */
export function meshEntry(repo: string, part: MeshPart, env: NodeJS.ProcessEnv = process.env): string {
  const dist = env['RONDO_MESH_DIST'];
  return dist !== undefined && dist !== '' ? join(dist, part, 'main.js') : join(repo, part, 'main.ts');
}

/**
 * Command line of the controller (contract). `RONDO_CONTROLLER_ARGS` adds controller flags
 * (tests: e.g. `--debug-unchecked-trust-bundle-file <file>`), split on whitespace.
 */
export function controllerArgv(o: { node: string; repo: string; stateDir: string; runDir: string; plan: LabPlan },
  env: NodeJS.ProcessEnv = process.env): string[] {
  const p = meshPaths(o.runDir);
  const ttl = o.plan.meshOptions?.certTtlSeconds;
  return [o.node, meshEntry(o.repo, 'controller', env), '--files', o.stateDir, '--listen', o.plan.controller.ip, '--ca-dir', p.ca, '--tokens', p.tokens,
    ...(ttl !== undefined ? ['--cert-ttl', String(ttl)] : []), ...(env['RONDO_CONTROLLER_ARGS'] ?? '').split(/\s+/).filter((w) => w !== '')];
}

/**
 * Node flags the agent runs with: 8 MiB semi-spaces (default 16) bound the young generation,
 * so connection churn leaves less RSS behind (1,000 held connections: ~173 instead of ~240 MB).
 * 1–2 MiB saved a little more memory but cost ~50 % more CPU per GB of bulk transfer in
 * scavenges (docs/performance.md). A DaemonSet passes the same flag.
 */
export const AGENT_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=8'];

/**
 * Command line of one node agent (contract). For profiling and benchmarks,
 * `RONDO_AGENT_NODE_OPTIONS` adds Node flags (e.g. `--cpu-prof --cpu-prof-dir=/tmp/p`) and
 * `RONDO_AGENT_ARGS` adds agent flags (e.g. `--workers 1`); both are split on whitespace.
 */
export function agentArgv(o: { node: string; repo: string; runDir: string; plan: LabPlan; nodeName: string; tokenFile: string },
  env: NodeJS.ProcessEnv = process.env): string[] {
  const words = (v: string | undefined): string[] => (v ?? '').split(/\s+/).filter((w) => w !== '');
  return [o.node, ...AGENT_NODE_FLAGS, ...words(env['RONDO_AGENT_NODE_OPTIONS']), meshEntry(o.repo, 'node-agent', env), '--node', o.nodeName, '--controller', `${o.plan.controller.ip}:${MESH_PORTS.push}`,
    '--token-file', o.tokenFile, '--ca-file', meshPaths(o.runDir).rootCert, ...words(env['RONDO_AGENT_ARGS'])];
}

/**
 * Command line of a waypoint (contract). `RONDO_WAYPOINT_NODE_OPTIONS` adds Node flags and
 * `RONDO_WAYPOINT_ARGS` waypoint flags (profiling, benchmarks), split on whitespace.
 */
export function waypointArgv(o: { node: string; repo: string; runDir: string; plan: LabPlan; namespace: string; name: string; tokenFile: string },
  env: NodeJS.ProcessEnv = process.env): string[] {
  const words = (v: string | undefined): string[] => (v ?? '').split(/\s+/).filter((w) => w !== '');
  return [o.node, ...words(env['RONDO_WAYPOINT_NODE_OPTIONS']), meshEntry(o.repo, 'waypoint', env), '--namespace', o.namespace, '--name', o.name,
    '--controller', `${o.plan.controller.ip}:${MESH_PORTS.push}`, '--token-file', o.tokenFile, '--ca-file', meshPaths(o.runDir).rootCert, ...words(env['RONDO_WAYPOINT_ARGS'])];
}

/**
 * Adds a waypoint's bootstrap token to tokens.json (replaced atomically: the controller
 * re-reads the file when it changes) and writes its token file; returns the token file.
 */
export function addWaypointToken(runDir: string, namespace: string, name: string): string {
  const p = meshPaths(runDir);
  mkdirSync(p.tokenDir, { recursive: true, mode: 0o700 });
  const table = readTokenTable(p.tokens);
  const file = waypointTokenFile(runDir, namespace, name);
  const old = existsSync(file) ? readFileSync(file, 'utf8').trim() : undefined;
  if (old !== undefined) delete table[old];
  const token = randomBytes(32).toString('hex');
  table[token] = { kind: 'waypoint', namespace, name };
  writeFileSync(file, token + '\n', { mode: 0o600 });
  writeAtomic(p.tokens, JSON.stringify(table, null, 1) + '\n', 0o600);
  return file;
}

/** Removes a waypoint's token from tokens.json and its token file (no-op when absent). */
export function removeWaypointToken(runDir: string, namespace: string, name: string): void {
  const p = meshPaths(runDir);
  const file = waypointTokenFile(runDir, namespace, name);
  if (!existsSync(file)) return;
  const token = readFileSync(file, 'utf8').trim();
  const table = readTokenTable(p.tokens);
  if (token in table) {
    delete table[token];
    writeAtomic(p.tokens, JSON.stringify(table, null, 1) + '\n', 0o600);
  }
  rmSync(file, { force: true });
}

/** Token file of a waypoint: `tokens/waypoint.<ns>.<name>.token`. */
export function waypointTokenFile(runDir: string, namespace: string, name: string): string {
  return join(meshPaths(runDir).tokenDir, `waypoint.${namespace}.${name}.token`);
}

function readTokenTable(file: string): Record<string, unknown> {
  if (!existsSync(file)) return {};
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new RondoError('RONDO_E_CONFIG', `cannot read the lab's token file ${file}: ${errorMessage(e)}`);
  }
}

/** HTTP GET from inside a netns (the lab's addresses are unreachable from the root namespace). */
export async function httpGetInNetns(run: CommandRunner, netns: string, url: string, timeoutS = 2): Promise<{ status: number; body: string }> {
  const r = await run('ip', ['netns', 'exec', netns, 'curl', '-s', '-m', String(timeoutS), '-o', '-', '-w', '\n%{http_code}', url], { allowFail: true, timeoutMs: (timeoutS + 2) * 1000 });
  const at = r.stdout.lastIndexOf('\n');
  return { status: Number(r.stdout.slice(at + 1)) || 0, body: r.stdout.slice(0, Math.max(at, 0)) };
}

/** Polls until `check` is true; fails with `what` and the log path when the process dies or time runs out. */
export async function waitFor(o: { what: string; proc: ProcessInfo; timeoutMs: number; check: () => Promise<boolean>; sleep?: (ms: number) => Promise<void> }): Promise<void> {
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const deadline = Date.now() + o.timeoutMs;
  for (;;) {
    if (await o.check()) return;
    if (!isOurs(o.proc)) throw new RondoError('RONDO_E_LAB_PROCESS_EXITED', `${o.what}: the process exited; see ${o.proc.log}`);
    if (Date.now() > deadline) throw new RondoError('RONDO_E_LAB_NOT_READY', `${o.what}: not ready after ${o.timeoutMs / 1000}s; see ${o.proc.log}`);
    await sleep(200);
  }
}

/** True when the entry point of a mesh part is present in the repo. */
export function hasEntry(repo: string, part: MeshPart): boolean {
  return existsSync(join(repo, part, 'main.ts'));
}
