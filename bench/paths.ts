/**
 * The data paths the bench compares, as one table: which client pod calls which target, how
 * many proxy hops a request crosses and which processes' CPU/RSS count against the path.
 * Adding a path (e.g. the waypoint) is one entry here.
 */
import { InvalidInputError } from '../common/errors.ts';

/** A process group whose CPU and memory a path is charged with. */
export type ProcRef =
  | { kind: 'agent'; node: string }
  | { kind: 'haproxy'; side: 'client' | 'server' }
  | { kind: 'waypoint' };

/** What a path needs to exist in the lab before it can be measured. */
export type Requirement = 'mesh' | 'haproxy' | 'waypoint';

/** Where the load goes: a pod's IP, a Service's VIP, or the HAProxy tunnel's entry on node 1. */
export type Target = { pod: string } | { service: string } | { haproxy: true };

/** One row of the path table. */
export interface PathDef {
  name: string;
  label: string;
  /** client pod (`ns/deployment`) the load tools run in */
  client: string;
  target: Target;
  /** proxies a request passes (per-hop CPU divides by this; 0 for no proxy) */
  hops: number;
  account: ProcRef[];
  requires: Requirement[];
}

/** Ports the bench uses: the demo echo, iperf3, and the HAProxy tunnel's listeners. */
export const PORTS = { http: 8080, serviceHttp: 80, iperf: 5201, haproxyHttp: 18080, haproxyIperf: 15201, haproxyTlsHttp: 18443, haproxyTlsIperf: 15443 } as const;

/** Every path, in report order. */
export const PATHS: readonly PathDef[] = [
  { name: 'direct', label: 'direct (no mesh)', client: 'bench-direct/client', target: { pod: 'bench-direct/server' }, hops: 0, account: [], requires: [] },
  { name: 'direct-local', label: 'direct, same node', client: 'bench-direct/client', target: { pod: 'bench-direct/server-local' }, hops: 0, account: [], requires: [] },
  {
    name: 'l4', label: 'Rondo L4 (HBONE)', client: 'bench-mesh/client', target: { pod: 'bench-mesh/server' }, hops: 2,
    account: [{ kind: 'agent', node: 'node-1' }, { kind: 'agent', node: 'node-2' }], requires: ['mesh'],
  },
  { name: 'l4-local', label: 'Rondo L4, same node', client: 'bench-mesh/client', target: { pod: 'bench-mesh/server-local' }, hops: 1, account: [{ kind: 'agent', node: 'node-1' }], requires: ['mesh'] },
  {
    name: 'l7', label: 'Rondo L7 (waypoint)', client: 'bench-mesh/client', target: { service: 'bench-mesh/server' }, hops: 3,
    account: [{ kind: 'agent', node: 'node-1' }, { kind: 'waypoint' }, { kind: 'agent', node: 'node-2' }], requires: ['mesh', 'waypoint'],
  },
  {
    name: 'haproxy', label: 'HAProxy mTLS tunnel', client: 'bench-direct/client', target: { haproxy: true }, hops: 2,
    account: [{ kind: 'haproxy', side: 'client' }, { kind: 'haproxy', side: 'server' }], requires: ['haproxy'],
  },
];

/** The paths named in a comma list (all when undefined); unknown names are refused. */
export function selectPaths(list: string | undefined, all: readonly PathDef[] = PATHS): PathDef[] {
  if (list === undefined || list.trim() === '') return [...all];
  const names = list.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const unknown = names.filter((n) => !all.some((p) => p.name === n));
  if (unknown.length > 0) throw new InvalidInputError(`--paths: unknown path ${unknown.map((u) => `"${u}"`).join(', ')}; known: ${all.map((p) => p.name).join(', ')}`);
  return all.filter((p) => names.includes(p.name));
}

/** Why a path cannot be measured (the first missing requirement's reason), or undefined. */
export function unavailableReason(p: PathDef, missing: Partial<Record<Requirement, string>>): string | undefined {
  for (const r of p.requires) {
    const why = missing[r];
    if (why !== undefined) return why;
  }
  return undefined;
}

/** What the lab knows, for turning a target into addresses. */
export interface TargetLookup { podIp(ref: string): string; serviceIp(ref: string): string; haproxyEntry(): string }

/** The address the load tools dial for a path: HTTP and iperf3 endpoints. */
export function resolveTarget(p: PathDef, lab: TargetLookup): { ip: string; httpPort: number; iperfPort: number } {
  const t = p.target;
  if ('pod' in t) return { ip: lab.podIp(t.pod), httpPort: PORTS.http, iperfPort: PORTS.iperf };
  if ('service' in t) return { ip: lab.serviceIp(t.service), httpPort: PORTS.serviceHttp, iperfPort: PORTS.iperf };
  return { ip: lab.haproxyEntry(), httpPort: PORTS.haproxyHttp, iperfPort: PORTS.haproxyIperf };
}

/** Stable key of a process group, as used in samples and the report. */
export function procKey(r: ProcRef): string {
  if (r.kind === 'agent') return `node-agent/${r.node}`;
  if (r.kind === 'haproxy') return `haproxy/${r.side}`;
  return 'waypoint';
}

/** Pure: the order paths run in round `round` (rotated each round so no path always goes first). */
export function interleave<T>(items: readonly T[], round: number): T[] {
  if (items.length === 0) return [];
  const k = ((round % items.length) + items.length) % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}
