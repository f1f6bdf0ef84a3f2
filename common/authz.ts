/**
 * The authorization engine (Istio AuthorizationPolicy semantics) and the PeerAuthentication
 * mode lookup, shared by the node agent (L4: one decision per connection) and the waypoint
 * (L7: one per request). Policies are compiled once per config version (AuthzPolicies.compile);
 * a decision is then pure and allocation-light.
 *
 * What is evaluated is a request view: the peer (identity, IP), the destination port and,
 * from an L7 caller only, the HTTP method, path and host.
 *
 * Semantics:
 * - A policy applies to a workload when it is in the workload's namespace, or in the mesh
 *   root namespace (any namespace's workloads), and its selector's labels are all on it.
 * - DENY first (any matching rule denies), then ALLOW (if any ALLOW policy applies, at least
 *   one of its rules must match; an ALLOW policy with no rules allows nothing); AUDIT only
 *   records what matched.
 * - Within a rule, `from` sources and `to` operations are each ORed, and the fields inside
 *   one source or operation ANDed; values within a field are ORed, `notX` excludes.
 * - L7 fields (methods, paths, hosts and their notX) with an L4-only view (no `http`): the
 *   caller cannot see them, so they fail closed: in ALLOW such an operation never matches
 *   (it cannot grant); in DENY and AUDIT the L7 conditions count as met and the operation
 *   matches on its ports alone, so the DENY applies to the whole connection (as ztunnel
 *   does). With an L7 view they are evaluated:
 *   - methods: case-sensitive;
 *   - paths: against the path without query and fragment (Istio's `url_path`), as received
 *     (normalising it is the caller's job); a path template (`{*}`, `{**}`) is not supported
 *     and fails closed like a bad ipBlock below;
 *   - hosts: case-insensitive (RFC 4343); `example.com` does not match `example.com:8080`,
 *     write `example.com:*` for that (as Istio).
 *   Every string field takes Istio's forms: exact, `prefix*`, `*suffix`, `*` (any non-empty).
 * - Plaintext peers (no identity) never match principals/namespaces, but do match
 *   notPrincipals/notNamespaces (as Envoy/ztunnel RBAC do). Principals compare without the
 *   `spiffe://` scheme on either side.
 * - An unparsable ipBlocks/notIpBlocks entry fails closed too: in DENY it counts as matching
 *   every peer (ipBlocks) / excluding none (notIpBlocks); in ALLOW it matches no peer
 *   (ipBlocks) / excludes every peer (notIpBlocks). invalidIpBlocks() names them for logs.
 * - A field present with an empty list matches nothing (notX: excludes nothing).
 */
import { BlockList, isIP } from 'node:net';
import type { AuthorizationPolicy, PeerAuthentication, PolicyRule } from './wire.ts';
import { principalOf, tryParseSpiffeId } from './spiffe.ts';
import { stripV4Mapped } from './ip.ts';
import { keyOf, selectorMatches } from './resources.ts';

/** The HTTP facts of one request, from an L7 caller (the waypoint). */
export interface HttpRequestView {
  method: string;
  /** The request target's path; a query or fragment is ignored. */
  path: string;
  /** `:authority` or `Host`. */
  host: string;
  /**
   * Request headers, lowercase names. Carried for `when` conditions on request headers,
   * which the pushed policy schema does not have yet: no rule reads them today.
   */
  headers?: Readonly<Record<string, string | readonly string[] | undefined>>;
}

/** What authorization sees of one connection (L4) or request (L7). */
export interface RequestView {
  /** Peer SPIFFE ID from its verified certificate; absent for plaintext. */
  sourceIdentity?: string;
  sourceIp: string;
  /** Destination port at the workload. */
  port: number;
  /** Present only when the caller parsed HTTP; absent, L7 fields fail closed (see above). */
  http?: HttpRequestView;
}

/** The workload a request is for: what policy selectors and PeerAuthentications select on. */
export interface AuthzTarget {
  namespace: string;
  name: string;
  labels: Readonly<Record<string, string>>;
}

/**
 * The verdict, with the policy that decided it and every AUDIT policy that matched; a denial
 * carries the code metrics and access logs use.
 */
export type AuthzResult =
  | { allowed: true; reason: string; policy?: string; audited: string[] }
  | { allowed: false; code: 'RONDO_E_POLICY_DENIED' | 'RONDO_E_PLAINTEXT_NOT_ALLOWED'; reason: string; policy?: string; audited: string[] };

/** The mTLS mode of a workload. */
export type MtlsMode = PeerAuthentication['mode'];

type Action = AuthorizationPolicy['action'];
type Source = NonNullable<PolicyRule['from']>[number];
type Operation = NonNullable<PolicyRule['to']>[number];

/** Istio string match: exact, `*` (any non-empty), `prefix*`, `*suffix`. */
export function globMatches(pattern: string, value: string): boolean {
  if (pattern === '*') return value.length > 0;
  if (pattern.endsWith('*')) return value.startsWith(pattern.slice(0, -1));
  if (pattern.startsWith('*')) return value.endsWith(pattern.slice(1));
  return pattern === value;
}

/** A compiled list of Istio string patterns: exact values in a Set, the rest scanned. */
class Patterns {
  readonly #exact = new Set<string>();
  readonly #prefixes: string[] = [];
  readonly #suffixes: string[] = [];
  #any = false;
  /** Some pattern is of a form this engine does not evaluate (fails closed, see header). */
  readonly unsupported: boolean;

  constructor(patterns: readonly string[], norm: (s: string) => string, isUnsupported: (p: string) => boolean = () => false) {
    let unsupported = false;
    for (const raw of patterns) {
      if (isUnsupported(raw)) { unsupported = true; continue; }
      const p = norm(raw);
      if (p === '*') this.#any = true;
      else if (p.endsWith('*')) this.#prefixes.push(p.slice(0, -1));
      else if (p.startsWith('*')) this.#suffixes.push(p.slice(1));
      else this.#exact.add(p);
    }
    this.unsupported = unsupported;
  }

  /** True when `value` matches one of the supported patterns. */
  matches(value: string): boolean {
    if (this.#any && value.length > 0) return true;
    if (this.#exact.has(value)) return true;
    for (const p of this.#prefixes) if (value.startsWith(p)) return true;
    for (const s of this.#suffixes) if (value.endsWith(s)) return true;
    return false;
  }
}

const same = (s: string): string => s;
const lower = (s: string): string => s.toLowerCase();
const isPathTemplate = (p: string): boolean => p.includes('{') || p.includes('}');

/** The path Istio's `paths` compare with: without query and fragment. */
function urlPath(path: string): string {
  let end = path.length;
  const q = path.indexOf('?');
  if (q >= 0) end = q;
  const h = path.indexOf('#');
  if (h >= 0 && h < end) end = h;
  return end === path.length ? path : path.slice(0, end);
}

interface CompiledBlocks {
  check(ip: string): boolean;
  /** Some entry did not parse as an IP or CIDR. */
  invalid: boolean;
}

function compileBlocks(cidrs: readonly string[]): CompiledBlocks {
  const bl = new BlockList();
  let invalid = false;
  for (const cidr of cidrs) if (!addCidr(bl, cidr)) invalid = true;
  return {
    invalid,
    check: (ip) => {
      const v4 = stripV4Mapped(ip);
      const fam = isIP(v4);
      return fam !== 0 && bl.check(v4, fam === 6 ? 'ipv6' : 'ipv4');
    },
  };
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

/** The peer as rules see it. */
interface Peer {
  /** Principal without `spiffe://`, e.g. `cluster.local/ns/x/sa/y`; undefined if plaintext. */
  principal: string | undefined;
  namespace: string | undefined;
  ip: string;
}

class CompiledSource {
  readonly #principals: Patterns | undefined;
  readonly #notPrincipals: Patterns | undefined;
  readonly #namespaces: Patterns | undefined;
  readonly #notNamespaces: Patterns | undefined;
  readonly #ipBlocks: CompiledBlocks | undefined;
  readonly #notIpBlocks: CompiledBlocks | undefined;

  constructor(s: Source) {
    this.#principals = s.principals === undefined ? undefined : new Patterns(s.principals, principalOf);
    this.#notPrincipals = s.notPrincipals === undefined ? undefined : new Patterns(s.notPrincipals, principalOf);
    this.#namespaces = s.namespaces === undefined ? undefined : new Patterns(s.namespaces, same);
    this.#notNamespaces = s.notNamespaces === undefined ? undefined : new Patterns(s.notNamespaces, same);
    this.#ipBlocks = s.ipBlocks === undefined ? undefined : compileBlocks(s.ipBlocks);
    this.#notIpBlocks = s.notIpBlocks === undefined ? undefined : compileBlocks(s.notIpBlocks);
  }

  matches(peer: Peer, deny: boolean): boolean {
    if (this.#principals !== undefined && !(peer.principal !== undefined && this.#principals.matches(peer.principal))) return false;
    if (this.#notPrincipals !== undefined && peer.principal !== undefined && this.#notPrincipals.matches(peer.principal)) return false;
    if (this.#namespaces !== undefined && !(peer.namespace !== undefined && this.#namespaces.matches(peer.namespace))) return false;
    if (this.#notNamespaces !== undefined && peer.namespace !== undefined && this.#notNamespaces.matches(peer.namespace)) return false;
    const b = this.#ipBlocks;
    if (b !== undefined && !(b.check(peer.ip) || (b.invalid && deny))) return false;
    const nb = this.#notIpBlocks;
    if (nb !== undefined && (nb.check(peer.ip) || (nb.invalid && !deny))) return false;
    return true;
  }
}

class CompiledOperation {
  readonly #ports: ReadonlySet<number> | undefined;
  readonly #notPorts: ReadonlySet<number> | undefined;
  readonly #methods: Patterns | undefined;
  readonly #notMethods: Patterns | undefined;
  readonly #paths: Patterns | undefined;
  readonly #notPaths: Patterns | undefined;
  readonly #hosts: Patterns | undefined;
  readonly #notHosts: Patterns | undefined;
  /** The operation has L7 conditions (see the header for how an L4 view treats them). */
  readonly l7: boolean;

  constructor(op: Operation) {
    this.#ports = op.ports === undefined ? undefined : new Set(op.ports);
    this.#notPorts = op.notPorts === undefined ? undefined : new Set(op.notPorts);
    this.#methods = op.methods === undefined ? undefined : new Patterns(op.methods, same);
    this.#notMethods = op.notMethods === undefined ? undefined : new Patterns(op.notMethods, same);
    this.#paths = op.paths === undefined ? undefined : new Patterns(op.paths, same, isPathTemplate);
    this.#notPaths = op.notPaths === undefined ? undefined : new Patterns(op.notPaths, same, isPathTemplate);
    this.#hosts = op.hosts === undefined ? undefined : new Patterns(op.hosts, lower);
    this.#notHosts = op.notHosts === undefined ? undefined : new Patterns(op.notHosts, lower);
    this.l7 = op.methods !== undefined || op.notMethods !== undefined || op.paths !== undefined ||
      op.notPaths !== undefined || op.hosts !== undefined || op.notHosts !== undefined;
  }

  matches(req: RequestView, action: Action): boolean {
    if (this.#ports !== undefined && !this.#ports.has(req.port)) return false;
    if (this.#notPorts?.has(req.port) === true) return false;
    if (!this.l7) return true;
    const http = req.http;
    if (http === undefined) return action !== 'ALLOW';
    const deny = action !== 'ALLOW';
    if (this.#methods !== undefined && !this.#methods.matches(http.method)) return false;
    if (this.#notMethods?.matches(http.method) === true) return false;
    if (this.#paths !== undefined || this.#notPaths !== undefined) {
      const path = urlPath(http.path);
      // Unsupported path patterns: DENY treats them as matching every path, ALLOW as none.
      const p = this.#paths;
      if (p !== undefined && !(p.matches(path) || (p.unsupported && deny))) return false;
      const np = this.#notPaths;
      if (np !== undefined && (np.matches(path) || (np.unsupported && !deny))) return false;
    }
    if (this.#hosts !== undefined || this.#notHosts !== undefined) {
      const host = http.host.toLowerCase();
      if (this.#hosts !== undefined && !this.#hosts.matches(host)) return false;
      if (this.#notHosts?.matches(host) === true) return false;
    }
    return true;
  }
}

class CompiledRule {
  readonly #from: readonly CompiledSource[] | undefined;
  readonly #to: readonly CompiledOperation[] | undefined;

  constructor(r: PolicyRule) {
    this.#from = r.from === undefined || r.from.length === 0 ? undefined : r.from.map((s) => new CompiledSource(s));
    this.#to = r.to === undefined || r.to.length === 0 ? undefined : r.to.map((op) => new CompiledOperation(op));
  }

  matches(peer: Peer, req: RequestView, action: Action): boolean {
    const deny = action !== 'ALLOW';
    if (this.#from !== undefined && !this.#from.some((s) => s.matches(peer, deny))) return false;
    return this.#to === undefined || this.#to.some((op) => op.matches(req, action));
  }
}

/** One policy, compiled. */
class CompiledPolicy {
  readonly key: string;
  readonly action: Action;
  readonly selector: Readonly<Record<string, string>> | undefined;
  readonly #rules: readonly CompiledRule[];

  constructor(p: AuthorizationPolicy) {
    this.key = keyOf(p);
    this.action = p.action;
    this.selector = p.selector;
    this.#rules = p.rules.map((r) => new CompiledRule(r));
  }

  /** Zero rules: ALLOW allows nothing, DENY/AUDIT match nothing; both mean "no rule matches". */
  anyRuleMatches(peer: Peer, req: RequestView): boolean {
    for (const r of this.#rules) if (r.matches(peer, req, this.action)) return true;
    return false;
  }
}

const EMPTY: readonly never[] = Object.freeze([]);

function groupByNamespace<T extends { namespace: string; name: string }>(items: Iterable<T>): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const it of items) {
    let list = out.get(it.namespace);
    if (list === undefined) out.set(it.namespace, (list = []));
    list.push(it);
  }
  // Name order makes "which policy decided" deterministic across pushes.
  for (const list of out.values()) list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return out;
}

/** What one config version says about authorization. */
export interface AuthzInput {
  policies: Iterable<AuthorizationPolicy>;
  peerAuthentications: Iterable<PeerAuthentication>;
  /** Namespace whose policies and PeerAuthentications apply mesh-wide. */
  rootNamespace: string;
}

/** The policies and PeerAuthentications of one config version, compiled; decisions are pure. */
export class AuthzPolicies {
  readonly #rootNamespace: string;
  readonly #policiesByNs: Map<string, AuthorizationPolicy[]>;
  readonly #compiledByNs: Map<string, CompiledPolicy[]>;
  readonly #peerAuthsByNs: Map<string, PeerAuthentication[]>;

  private constructor(i: AuthzInput) {
    this.#rootNamespace = i.rootNamespace;
    this.#policiesByNs = groupByNamespace(i.policies);
    this.#compiledByNs = new Map([...this.#policiesByNs].map(([ns, list]) => [ns, list.map((p) => new CompiledPolicy(p))]));
    this.#peerAuthsByNs = groupByNamespace(i.peerAuthentications);
  }

  /** Compiles one config version's policies (call once per version, not per request). */
  static compile(i: AuthzInput): AuthzPolicies {
    return new AuthzPolicies(i);
  }

  /** Authorization policies of one namespace (any selector), in name order. */
  policiesInNamespace(ns: string): readonly AuthorizationPolicy[] {
    return this.#policiesByNs.get(ns) ?? EMPTY;
  }

  /** PeerAuthentications of one namespace, in name order. */
  peerAuthsInNamespace(ns: string): readonly PeerAuthentication[] {
    return this.#peerAuthsByNs.get(ns) ?? EMPTY;
  }

  /** Keys of the policies that select `target`: its namespace's, then the root namespace's. */
  applicable(target: AuthzTarget): string[] {
    return this.#applicable(target).map((p) => p.key);
  }

  #applicable(target: AuthzTarget): CompiledPolicy[] {
    const out: CompiledPolicy[] = [];
    for (const p of this.#compiledByNs.get(target.namespace) ?? EMPTY) if (selectorMatches(p.selector, target.labels)) out.push(p);
    if (this.#rootNamespace !== target.namespace) {
      for (const p of this.#compiledByNs.get(this.#rootNamespace) ?? EMPTY) if (selectorMatches(p.selector, target.labels)) out.push(p);
    }
    return out;
  }

  /** Decides whether a connection (L4 view) or request (L7 view) to `target` is allowed. */
  authorize(target: AuthzTarget, req: RequestView): AuthzResult {
    const peer = peerOf(req);
    const audited: string[] = [];
    const allows: CompiledPolicy[] = [];
    let denied: CompiledPolicy | undefined;
    for (const p of this.#applicable(target)) {
      if (p.action === 'ALLOW') {
        allows.push(p);
      } else if (p.action === 'AUDIT') {
        if (p.anyRuleMatches(peer, req)) audited.push(p.key);
      } else if (denied === undefined && p.anyRuleMatches(peer, req)) {
        denied = p;
      }
    }
    if (denied !== undefined) {
      return { allowed: false, code: 'RONDO_E_POLICY_DENIED', reason: `denied by DENY policy ${denied.key}`, policy: denied.key, audited };
    }
    if (allows.length === 0) return { allowed: true, reason: 'no ALLOW policy applies', audited };
    for (const p of allows) {
      if (p.anyRuleMatches(peer, req)) return { allowed: true, reason: `allowed by ALLOW policy ${p.key}`, policy: p.key, audited };
    }
    const what = req.http === undefined ? `on port ${req.port}` : `${req.http.method} ${req.http.host}${urlPath(req.http.path)} on port ${req.port}`;
    return {
      allowed: false,
      code: 'RONDO_E_POLICY_DENIED',
      reason: `no ALLOW policy matched (${allows.map((p) => p.key).join(', ')} apply to ${keyOf(target)}) for ${peer.principal ?? `plaintext peer ${peer.ip}`} ${what}`,
      audited,
    };
  }

  /**
   * Full inbound check: plaintext (port 15006) is refused under STRICT before any policy runs;
   * under PERMISSIVE it is authorized like any peer without identity. Returns the mode so the
   * caller can label metrics (`connection_security_policy="none"` for plaintext).
   */
  authorizeInbound(target: AuthzTarget, req: RequestView, transport: 'hbone' | 'plaintext'): AuthzResult & { mode: MtlsMode } {
    const mode = this.peerAuthMode(target);
    if (transport === 'plaintext') {
      if (mode === 'STRICT') {
        return {
          allowed: false,
          code: 'RONDO_E_PLAINTEXT_NOT_ALLOWED',
          reason: `plaintext connection from ${req.sourceIp} to ${keyOf(target)} refused: mTLS mode is STRICT (add a PERMISSIVE PeerAuthentication to accept clients outside the mesh)`,
          audited: [],
          mode,
        };
      }
      // An identity claimed over plaintext is not verified: authorize as a peer without one.
      const { sourceIdentity: _ignored, ...plain } = req;
      return { ...this.authorize(target, plain), mode };
    }
    return { ...this.authorize(target, req), mode };
  }

  /** The mTLS mode of a workload: workload selector > namespace-wide > root namespace > STRICT. */
  peerAuthMode(target: AuthzTarget): MtlsMode {
    const ns = this.peerAuthsInNamespace(target.namespace);
    const bySelector = ns.find((pa) => pa.selector !== undefined && selectorMatches(pa.selector, target.labels));
    if (bySelector !== undefined) return bySelector.mode;
    const nsWide = ns.find((pa) => pa.selector === undefined);
    if (nsWide !== undefined) return nsWide.mode;
    const root = this.peerAuthsInNamespace(this.#rootNamespace).find((pa) => pa.selector === undefined);
    return root?.mode ?? 'STRICT';
  }
}

function peerOf(req: RequestView): Peer {
  if (req.sourceIdentity === undefined) return { principal: undefined, namespace: undefined, ip: req.sourceIp };
  return { principal: principalOf(req.sourceIdentity), namespace: tryParseSpiffeId(req.sourceIdentity)?.namespace, ip: req.sourceIp };
}
