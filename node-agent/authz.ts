/**
 * L4 authorization at the destination agent (Istio AuthorizationPolicy semantics) and the
 * PeerAuthentication mode lookup. Pure: the data path calls these per inbound connection.
 *
 * Semantics:
 * - A policy applies to a pod when it is in the pod's namespace, or in the mesh root
 *   namespace (any namespace's pods), and its selector's labels are all on the pod.
 * - DENY first (any matching rule denies), then ALLOW (if any ALLOW policy applies, at least
 *   one of its rules must match; an ALLOW policy with no rules allows nothing); AUDIT only
 *   records what matched.
 * - Rules with L7 fields (methods, paths, hosts): the agent cannot see them, so they fail
 *   closed: in ALLOW the rule never matches; in DENY the L7 conditions count as met and the
 *   rule matches on its L4 conditions alone (as ztunnel does).
 * - Plaintext peers (no identity) never match principals/namespaces, but do match
 *   notPrincipals/notNamespaces (as Envoy/ztunnel RBAC do).
 * - An unparsable ipBlocks/notIpBlocks entry fails closed too: in DENY it counts as matching
 *   every peer (ipBlocks) / excluding none (notIpBlocks); in ALLOW it matches no peer
 *   (ipBlocks) / excludes every peer (notIpBlocks). invalidIpBlocks() names them for logs.
 */
import { BlockList, isIP } from 'node:net';
import type { AuthorizationPolicy, PeerAuthentication, PolicyRule, Workload } from '../common/wire.ts';
import { principalOf, tryParseSpiffeId } from '../common/spiffe.ts';
import { stripV4Mapped } from '../common/ip.ts';
import type { AgentState } from './state.ts';
import { keyOf, selectorMatches } from './state.ts';

/** One inbound connection to authorize. */
export interface AuthzRequest {
  /** Peer SPIFFE ID from its verified certificate; absent for plaintext. */
  sourceIdentity?: string;
  sourceIp: string;
  destination: Workload;
  /** Destination port at the pod. */
  port: number;
}

/**
 * The verdict, with the policy that decided it and every AUDIT policy that matched; a denial
 * carries the code metrics and access logs use.
 */
export type AuthzResult =
  | { allowed: true; reason: string; policy?: string; audited: string[] }
  | { allowed: false; code: 'RONDO_E_POLICY_DENIED' | 'RONDO_E_PLAINTEXT_NOT_ALLOWED'; reason: string; policy?: string; audited: string[] };

type Source = NonNullable<PolicyRule['from']>[number];
type Operation = NonNullable<PolicyRule['to']>[number];

interface Peer {
  /** Principal without `spiffe://`, e.g. `cluster.local/ns/x/sa/y`; undefined if plaintext. */
  principal: string | undefined;
  namespace: string | undefined;
  ip: string;
}

/** Decides whether an inbound L4 connection is allowed. */
export function authorize(state: AgentState, req: AuthzRequest): AuthzResult {
  const peer = peerOf(req);
  const audited: string[] = [];
  const allows: AuthorizationPolicy[] = [];
  let denied: AuthorizationPolicy | undefined;
  for (const p of applicablePolicies(state, req.destination)) {
    if (p.action === 'ALLOW') {
      allows.push(p);
    } else if (p.action === 'AUDIT') {
      if (anyRuleMatches(p, peer, req.port, 'AUDIT')) audited.push(keyOf(p));
    } else if (denied === undefined && anyRuleMatches(p, peer, req.port, 'DENY')) {
      denied = p;
    }
  }
  if (denied !== undefined) {
    return { allowed: false, code: 'RONDO_E_POLICY_DENIED', reason: `denied by DENY policy ${keyOf(denied)}`, policy: keyOf(denied), audited };
  }
  if (allows.length === 0) return { allowed: true, reason: 'no ALLOW policy applies', audited };
  for (const p of allows) {
    if (anyRuleMatches(p, peer, req.port, 'ALLOW')) {
      return { allowed: true, reason: `allowed by ALLOW policy ${keyOf(p)}`, policy: keyOf(p), audited };
    }
  }
  return {
    allowed: false,
    code: 'RONDO_E_POLICY_DENIED',
    reason: `no ALLOW policy matched (${allows.map(keyOf).join(', ')} apply to ${keyOf(req.destination)}) for ${peer.principal ?? `plaintext peer ${peer.ip}`} on port ${req.port}`,
    audited,
  };
}

/**
 * Full inbound check: plaintext (port 15006) is refused under STRICT before any policy runs;
 * under PERMISSIVE it is authorized like any peer without identity. Returns the mode so the
 * caller can label metrics (`connection_security_policy="none"` for plaintext).
 */
export function authorizeInbound(
  state: AgentState,
  req: AuthzRequest,
  transport: 'hbone' | 'plaintext',
): AuthzResult & { mode: 'STRICT' | 'PERMISSIVE' } {
  const mode = peerAuthMode(state, req.destination);
  if (transport === 'plaintext') {
    if (mode === 'STRICT') {
      return {
        allowed: false,
        code: 'RONDO_E_PLAINTEXT_NOT_ALLOWED',
        reason: `plaintext connection from ${req.sourceIp} to ${keyOf(req.destination)} refused: mTLS mode is STRICT (add a PERMISSIVE PeerAuthentication to accept clients outside the mesh)`,
        audited: [],
        mode,
      };
    }
    const { sourceIdentity: _ignored, ...plain } = req;
    return { ...authorize(state, plain), mode };
  }
  return { ...authorize(state, req), mode };
}

/** The mTLS mode for a pod: workload selector > namespace-wide > root namespace > STRICT. */
export function peerAuthMode(state: AgentState, w: Workload): 'STRICT' | 'PERMISSIVE' {
  const ns = state.peerAuthsInNamespace(w.namespace);
  const bySelector = ns.find((pa) => pa.selector !== undefined && selectorMatches(pa.selector, w.labels));
  if (bySelector !== undefined) return bySelector.mode;
  const nsWide = ns.find((pa) => pa.selector === undefined);
  if (nsWide !== undefined) return nsWide.mode;
  const root = firstMeshWide(state.peerAuthsInNamespace(state.config.mesh.rootNamespace));
  return root?.mode ?? 'STRICT';
}

function firstMeshWide(list: readonly PeerAuthentication[]): PeerAuthentication | undefined {
  return list.find((pa) => pa.selector === undefined);
}

/** Policies that select `w`: its namespace's and the root namespace's, selector-filtered. */
export function applicablePolicies(state: AgentState, w: Workload): AuthorizationPolicy[] {
  const out: AuthorizationPolicy[] = [];
  for (const p of state.policiesInNamespace(w.namespace)) if (selectorMatches(p.selector, w.labels)) out.push(p);
  const root = state.config.mesh.rootNamespace;
  if (root !== w.namespace) {
    for (const p of state.policiesInNamespace(root)) if (selectorMatches(p.selector, w.labels)) out.push(p);
  }
  return out;
}

function peerOf(req: AuthzRequest): Peer {
  if (req.sourceIdentity === undefined) return { principal: undefined, namespace: undefined, ip: req.sourceIp };
  return { principal: principalOf(req.sourceIdentity), namespace: tryParseSpiffeId(req.sourceIdentity)?.namespace, ip: req.sourceIp };
}

function anyRuleMatches(p: AuthorizationPolicy, peer: Peer, port: number, action: AuthorizationPolicy['action']): boolean {
  // Zero rules: ALLOW allows nothing, DENY/AUDIT match nothing; both mean "no rule matches".
  return p.rules.some((r) => ruleMatches(r, peer, port, action));
}

function ruleMatches(r: PolicyRule, peer: Peer, port: number, action: AuthorizationPolicy['action']): boolean {
  const fromOk = r.from === undefined || r.from.length === 0 || r.from.some((s) => sourceMatches(s, peer, action));
  if (!fromOk) return false;
  if (r.to === undefined || r.to.length === 0) return true;
  return r.to.some((op) => operationMatches(op, port, action));
}

function sourceMatches(s: Source, peer: Peer, action: AuthorizationPolicy['action']): boolean {
  if (s.principals !== undefined && !(peer.principal !== undefined && anyGlob(s.principals, peer.principal, principalOf))) {
    return false;
  }
  if (s.notPrincipals !== undefined && peer.principal !== undefined && anyGlob(s.notPrincipals, peer.principal, principalOf)) {
    return false;
  }
  if (s.namespaces !== undefined && !(peer.namespace !== undefined && anyGlob(s.namespaces, peer.namespace))) return false;
  if (s.notNamespaces !== undefined && peer.namespace !== undefined && anyGlob(s.notNamespaces, peer.namespace)) {
    return false;
  }
  const deny = action !== 'ALLOW';
  if (s.ipBlocks !== undefined) {
    const c = compiledBlocks(s.ipBlocks);
    if (!(c.check(peer.ip) || (c.invalid && deny))) return false;
  }
  if (s.notIpBlocks !== undefined) {
    const c = compiledBlocks(s.notIpBlocks);
    if (c.check(peer.ip) || (c.invalid && !deny)) return false;
  }
  return true;
}

function operationMatches(op: Operation, port: number, action: AuthorizationPolicy['action']): boolean {
  const hasL7 =
    op.methods !== undefined || op.notMethods !== undefined || op.paths !== undefined ||
    op.notPaths !== undefined || op.hosts !== undefined || op.notHosts !== undefined;
  if (hasL7 && action === 'ALLOW') return false;
  if (op.ports !== undefined && !op.ports.includes(port)) return false;
  if (op.notPorts?.includes(port) === true) return false;
  return true;
}

/** Istio string match: exact, `*` (any non-empty), `prefix*`, `*suffix`. */
export function globMatches(pattern: string, value: string): boolean {
  if (pattern === '*') return value.length > 0;
  if (pattern.endsWith('*')) return value.startsWith(pattern.slice(0, -1));
  if (pattern.startsWith('*')) return value.endsWith(pattern.slice(1));
  return pattern === value;
}

function anyGlob(patterns: readonly string[], value: string, norm: (s: string) => string = (s) => s): boolean {
  for (const p of patterns) if (globMatches(norm(p), value)) return true;
  return false;
}

interface CompiledBlocks {
  check(ip: string): boolean;
  /** Some entry did not parse as an IP or CIDR. */
  invalid: boolean;
}

// Policy objects are immutable per config version: compile each CIDR list once.
const blockLists = new WeakMap<readonly string[], CompiledBlocks>();

function compiledBlocks(cidrs: readonly string[]): CompiledBlocks {
  let c = blockLists.get(cidrs);
  if (c !== undefined) return c;
  const bl = new BlockList();
  let invalid = false;
  for (const cidr of cidrs) if (!addCidr(bl, cidr)) invalid = true;
  c = {
    invalid,
    check: (ip) => {
      const v4 = stripV4Mapped(ip);
      const fam = isIP(v4);
      return fam !== 0 && bl.check(v4, fam === 6 ? 'ipv6' : 'ipv4');
    },
  };
  blockLists.set(cidrs, c);
  return c;
}

function addCidr(bl: BlockList, cidr: string): boolean {
  const [addr = '', len, extra] = cidr.split('/');
  const family = isIP(addr);
  if (family === 0 || extra !== undefined) return false;
  const type = family === 6 ? 'ipv6' : 'ipv4';
  if (len === undefined) {
    bl.addAddress(addr, type);
    return true;
  }
  const n = Number(len);
  if (len === '' || !Number.isInteger(n) || n < 0 || n > (family === 6 ? 128 : 32)) return false;
  bl.addSubnet(addr, n, type);
  return true;
}

/** The ipBlocks/notIpBlocks entries of a policy that are not valid IPs or CIDRs (for NACK/logging). */
export function invalidIpBlocks(p: AuthorizationPolicy): string[] {
  const bad: string[] = [];
  for (const r of p.rules) {
    for (const s of r.from ?? []) {
      for (const c of [...(s.ipBlocks ?? []), ...(s.notIpBlocks ?? [])]) {
        if (!addCidr(new BlockList(), c)) bad.push(c);
      }
    }
  }
  return bad;
}
