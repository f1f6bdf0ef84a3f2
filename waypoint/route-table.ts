/**
 * The waypoint's route table: the HTTPRoutes and GRPCRoutes attached to each Service
 * (parentRef kind Service, GAMMA), compiled once per config version into sorted match lists,
 * so that choosing the rule for a request is a pure scan with no regex compilation and no
 * allocation beyond what the request's own query string or gRPC path needs.
 *
 * Semantics (Gateway API v1 and GEP-1294):
 * - Precedence across every rule of every route in play, HTTPRoute: Exact path, then the
 *   longest PathPrefix, then RegularExpression paths (implementation-specific: after all
 *   prefixes, longer pattern first), then a method match, then more header matches, then
 *   more query param matches; ties go to the oldest route (creationTimestamp; a route
 *   without one counts as newest), then `namespace/name` in code-unit order, then the first
 *   rule, then the first match. GRPCRoute: more characters of service, then of method, then
 *   more header matches (Exact before RegularExpression on a tie), then the same route order.
 * - PathPrefix matches whole path elements (`/foo` matches `/foo`, `/foo/`, `/foo/bar`, not
 *   `/foobar`); a trailing `/` on the prefix is ignored. Paths are matched without the query
 *   string, as given: the caller normalizes them first. Regexes match the whole value.
 * - `parentRef.port` (or `sectionName`, a Service port name) limits the route to that port.
 * - Producer routes (route namespace = service namespace) apply to every caller. Consumer
 *   routes (another namespace) apply only to callers from the route's namespace, and for them
 *   replace the producer routes on the ports they attach to.
 * - If GRPCRoutes and HTTPRoutes attach to the same service and port, the GRPCRoutes apply
 *   (GEP-1294 route type specificity).
 * - `hostnames` are not matched: GAMMA implementations should not infer anything from them.
 * - Header names match case-insensitively; of two matches on the same name only the first
 *   counts. Query params: the first value of a name, percent-decoded.
 */
import { compileFullMatch, durationMs } from '../common/gateway-api.ts';
import type { GRPCRouteRule, HTTPRouteFilter, HTTPRouteRule } from '../common/gateway-api.ts';
import type { L7Resource, Service } from '../common/wire.ts';

/** What the route table reads of a request. */
export interface RequestView {
  /** Service port the caller connected to. */
  readonly port: number;
  /** Upper-case method. */
  readonly method: string;
  /** Request target: the (normalized) path, optionally with `?query`. */
  readonly path: string;
  /** Host/authority; not used for matching (see the module comment). */
  readonly authority?: string;
  /** One header's value by lower-case name (repeated headers joined with `, `), or undefined. */
  header(name: string): string | undefined;
}

/** A filter of a rule or backend (GRPCRoute filters are a subset of HTTPRoute's). */
export type RouteFilter = HTTPRouteFilter;

/** One backend of the chosen rule. */
export interface RouteBackend {
  readonly namespace: string;
  readonly name: string;
  /** Service port (always set: validation requires it for a Service). */
  readonly port: number | undefined;
  /** 0: no traffic. */
  readonly weight: number;
  /** Filters for requests sent to this backend only. */
  readonly filters: readonly RouteFilter[];
}

/** A rule's backends with their running weight sums, for pickBackend(). */
export interface WeightedBackends {
  readonly list: readonly RouteBackend[];
  /** cumulative[i] = weight of list[0..i]. */
  readonly cumulative: readonly number[];
  readonly total: number;
}

/** Timeouts in milliseconds; 0 disables, undefined is unset (the waypoint's default). */
export interface RouteTimeouts {
  readonly requestMs: number | undefined;
  readonly backendRequestMs: number | undefined;
}

/** A rule's retry settings (GEP-1731). */
export interface RouteRetry {
  readonly codes: readonly number[];
  readonly attempts: number | undefined;
  readonly backoffMs: number | undefined;
}

/** The rule a request matched and what to do with it. */
export interface RouteMatch {
  readonly matched: true;
  readonly route: { readonly kind: 'HTTPRoute' | 'GRPCRoute'; readonly namespace: string; readonly name: string };
  readonly rule: { readonly index: number; readonly name: string | undefined };
  /** Which of the rule's matches selected it. */
  readonly matchIndex: number;
  /** The matched PathPrefix without a trailing `/` (`''` for `/`), for ReplacePrefixMatch. */
  readonly pathPrefix: string | undefined;
  readonly filters: readonly RouteFilter[];
  readonly backends: WeightedBackends;
  readonly timeouts: RouteTimeouts;
  readonly retry: RouteRetry | undefined;
}

/** No rule: `no-routes` (none attached: route to the service as usual), `no-match` (404 / UNIMPLEMENTED). */
export interface NoMatch {
  readonly matched: false;
  readonly reason: 'no-routes' | 'no-match';
}

const NO_ROUTES: NoMatch = Object.freeze({ matched: false, reason: 'no-routes' });
const NO_MATCH: NoMatch = Object.freeze({ matched: false, reason: 'no-match' });

/** Routes of one service. */
export interface ServiceRoutes {
  /** The rule for a request from a caller in `callerNamespace` (undefined: unknown caller, producer routes only). */
  match(req: RequestView, callerNamespace: string | undefined): RouteMatch | NoMatch;
}

/** Every service's routes for one config version. */
export interface RouteTable {
  readonly version: number;
  /** Keys (`<namespace>/<name>`) of the services that have routes. */
  readonly services: readonly string[];
  /** The routes of a service, or undefined when none attach to it. */
  forService(key: string): ServiceRoutes | undefined;
}

// ---- compiled form ----

interface HeaderMatcher { readonly name: string; readonly exact: string | undefined; readonly re: RegExp | undefined }
interface QueryMatcher { readonly name: string; readonly exact: string | undefined; readonly re: RegExp | undefined }

const PATH_EXACT = 3;
const PATH_PREFIX = 2;
const PATH_REGEX = 1;

interface HttpEntry {
  readonly kind: 'http';
  readonly pathType: number;
  /** Exact value, or the normalized prefix. */
  readonly pathValue: string;
  readonly pathRe: RegExp | undefined;
  readonly method: string | undefined;
  readonly headers: readonly HeaderMatcher[];
  readonly query: readonly QueryMatcher[];
  readonly rank: readonly number[];
  readonly order: EntryOrder;
  readonly result: RouteMatch;
}

interface GrpcEntry {
  readonly kind: 'grpc';
  /** `/<service>/<method>` when both are Exact. */
  readonly fullPath: string | undefined;
  readonly serviceExact: string | undefined;
  readonly methodExact: string | undefined;
  readonly serviceRe: RegExp | undefined;
  readonly methodRe: RegExp | undefined;
  readonly headers: readonly HeaderMatcher[];
  readonly rank: readonly number[];
  readonly order: EntryOrder;
  readonly result: RouteMatch;
}

type Entry = HttpEntry | GrpcEntry;

interface EntryOrder { readonly createdMs: number; readonly key: string; readonly rule: number; readonly match: number }

interface CompiledRoute {
  readonly kind: 'HTTPRoute' | 'GRPCRoute';
  readonly namespace: string;
  readonly entries: readonly Entry[];
}

/** Matchers by header name, lower-cased, first occurrence of a name only. */
function headerMatchers(list: readonly { type: string; name: string; value: string }[] | undefined): HeaderMatcher[] {
  const out: HeaderMatcher[] = [];
  const seen = new Set<string>();
  for (const h of list ?? []) {
    const name = h.name.toLowerCase();
    if (seen.has(name)) continue;
    seen.add(name);
    out.push(h.type === 'RegularExpression' ? { name, exact: undefined, re: compileFullMatch(h.value) } : { name, exact: h.value, re: undefined });
  }
  return out;
}

function queryMatchers(list: readonly { type: string; name: string; value: string }[] | undefined): QueryMatcher[] {
  const out: QueryMatcher[] = [];
  const seen = new Set<string>();
  for (const q of list ?? []) {
    if (seen.has(q.name)) continue;
    seen.add(q.name);
    out.push(q.type === 'RegularExpression' ? { name: q.name, exact: undefined, re: compileFullMatch(q.value) } : { name: q.name, exact: q.value, re: undefined });
  }
  return out;
}

function weighted(list: RouteBackend[]): WeightedBackends {
  const cumulative: number[] = [];
  let total = 0;
  for (const b of list) cumulative.push((total += b.weight));
  return Object.freeze({ list: Object.freeze(list), cumulative: Object.freeze(cumulative), total });
}

interface RuleParts {
  filters: readonly RouteFilter[];
  backends: WeightedBackends;
  timeouts: RouteTimeouts;
  retry: RouteRetry | undefined;
}

const NO_TIMEOUTS: RouteTimeouts = Object.freeze({ requestMs: undefined, backendRequestMs: undefined });

function ruleParts(routeNs: string, rule: HTTPRouteRule | GRPCRouteRule): RuleParts {
  const backends: RouteBackend[] = (rule.backendRefs ?? []).map((b) => Object.freeze({
    namespace: b.namespace ?? routeNs, name: b.name, port: b.port, weight: b.weight, filters: Object.freeze(b.filters ?? []),
  }));
  const t = 'timeouts' in rule ? rule.timeouts : undefined;
  const r = 'retry' in rule ? rule.retry : undefined;
  return {
    filters: Object.freeze(rule.filters ?? []),
    backends: weighted(backends),
    timeouts: t === undefined ? NO_TIMEOUTS : Object.freeze({
      requestMs: t.request === undefined ? undefined : durationMs(t.request),
      backendRequestMs: t.backendRequest === undefined ? undefined : durationMs(t.backendRequest),
    }),
    retry: r === undefined ? undefined : Object.freeze({ codes: Object.freeze(r.codes ?? []), attempts: r.attempts, backoffMs: r.backoff === undefined ? undefined : durationMs(r.backoff) }),
  };
}

function result(res: L7Resource & { kind: 'HTTPRoute' | 'GRPCRoute' }, ruleIndex: number, ruleName: string | undefined, matchIndex: number, pathPrefix: string | undefined, p: RuleParts): RouteMatch {
  return Object.freeze({
    matched: true,
    route: Object.freeze({ kind: res.kind, namespace: res.namespace, name: res.name }),
    rule: Object.freeze({ index: ruleIndex, name: ruleName }),
    matchIndex, pathPrefix, ...p,
  });
}

function compileRoute(res: L7Resource & { kind: 'HTTPRoute' | 'GRPCRoute' }): CompiledRoute {
  const created = res.creationTimestamp === undefined ? Number.POSITIVE_INFINITY : Date.parse(res.creationTimestamp);
  const key = `${res.namespace}/${res.name}`;
  const entries: Entry[] = [];
  if (res.kind === 'HTTPRoute') {
    res.spec.rules.forEach((rule, ri) => {
      const parts = ruleParts(res.namespace, rule);
      const matches = rule.matches.length > 0 ? rule.matches : [{ path: { type: 'PathPrefix' as const, value: '/' } }];
      matches.forEach((m, mi) => {
        const headers = headerMatchers(m.headers);
        const query = 'queryParams' in m ? queryMatchers(m.queryParams) : [];
        const type = m.path.type === 'Exact' ? PATH_EXACT : m.path.type === 'PathPrefix' ? PATH_PREFIX : PATH_REGEX;
        const value = type === PATH_PREFIX && m.path.value.endsWith('/') ? m.path.value.slice(0, -1) : m.path.value;
        const method = 'method' in m ? m.method : undefined;
        entries.push({
          kind: 'http', pathType: type, pathValue: value, pathRe: type === PATH_REGEX ? compileFullMatch(value) : undefined,
          method, headers, query,
          rank: [type, value.length, method !== undefined ? 1 : 0, headers.length, query.length],
          order: { createdMs: created, key, rule: ri, match: mi },
          result: result(res, ri, rule.name, mi, type === PATH_PREFIX ? value : undefined, parts),
        });
      });
    });
  } else {
    res.spec.rules.forEach((rule, ri) => {
      const parts = ruleParts(res.namespace, rule);
      const matches = rule.matches !== undefined && rule.matches.length > 0 ? rule.matches : [{}];
      matches.forEach((m, mi) => {
        const headers = headerMatchers('headers' in m ? m.headers : undefined);
        const mm = 'method' in m ? m.method : undefined;
        const regex = mm?.type === 'RegularExpression';
        const svc = mm?.service;
        const meth = mm?.method;
        entries.push({
          kind: 'grpc',
          fullPath: !regex && svc !== undefined && meth !== undefined ? `/${svc}/${meth}` : undefined,
          serviceExact: regex ? undefined : svc, methodExact: regex ? undefined : meth,
          serviceRe: regex && svc !== undefined ? compileFullMatch(svc) : undefined,
          methodRe: regex && meth !== undefined ? compileFullMatch(meth) : undefined,
          headers,
          rank: [svc?.length ?? 0, meth?.length ?? 0, headers.length, regex ? 0 : 1],
          order: { createdMs: created, key, rule: ri, match: mi },
          result: result(res, ri, rule.name, mi, undefined, parts),
        });
      });
    });
  }
  return { kind: res.kind, namespace: res.namespace, entries };
}

function compareEntries(a: Entry, b: Entry): number {
  for (let i = 0; i < a.rank.length; i++) {
    const d = (b.rank[i] ?? 0) - (a.rank[i] ?? 0);
    if (d !== 0) return d;
  }
  const x = a.order;
  const y = b.order;
  if (x.createdMs !== y.createdMs) return x.createdMs < y.createdMs ? -1 : 1;
  if (x.key !== y.key) return x.key < y.key ? -1 : 1;
  return x.rule - y.rule || x.match - y.match;
}

/** The sorted match entries for one port; `attached` even when the routes have no rules (then nothing matches). */
interface EntryList {
  readonly attached: boolean;
  readonly entries: readonly Entry[];
}

/** The entries of a set of routes (GRPCRoutes only, if there are any). */
function entriesOf(routes: ReadonlySet<CompiledRoute>): EntryList {
  let list = [...routes];
  if (list.some((r) => r.kind === 'GRPCRoute')) list = list.filter((r) => r.kind === 'GRPCRoute');
  return { attached: list.length > 0, entries: Object.freeze(list.flatMap((r) => r.entries).sort(compareEntries)) };
}

interface Attachment { readonly route: CompiledRoute; readonly port: number | undefined }

/** Entries of one group (producer, or one consumer namespace) by port. */
interface PortLists {
  readonly byPort: ReadonlyMap<number, EntryList>;
  /** For ports no route of the group names. */
  readonly any: EntryList;
}

function portLists(atts: readonly Attachment[]): PortLists {
  const all = new Set<CompiledRoute>();
  const ports = new Map<number, Set<CompiledRoute>>();
  for (const a of atts) if (a.port === undefined) all.add(a.route);
  for (const a of atts) {
    if (a.port === undefined) continue;
    let s = ports.get(a.port);
    if (s === undefined) ports.set(a.port, (s = new Set(all)));
    s.add(a.route);
  }
  const byPort = new Map<number, EntryList>();
  for (const [p, s] of ports) byPort.set(p, entriesOf(s));
  return { byPort, any: entriesOf(all) };
}

function listFor(g: PortLists, port: number): EntryList {
  return g.byPort.get(port) ?? g.any;
}

/** Percent-decodes, keeping the raw text when it is not valid escapes. */
function decode(s: string): string {
  if (!s.includes('%')) return s;
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

const NO_QUERY: ReadonlyMap<string, string> = new Map();

/** First value of every query parameter (`?a=1&b&a=2` -> a: 1, b: ''). */
function parseQuery(target: string, q: number): ReadonlyMap<string, string> {
  if (q < 0) return NO_QUERY;
  const out = new Map<string, string>();
  let i = q + 1;
  const hash = target.indexOf('#', i);
  const end = hash < 0 ? target.length : hash;
  while (i <= end) {
    let amp = target.indexOf('&', i);
    if (amp < 0 || amp > end) amp = end;
    if (amp > i) {
      const eq = target.indexOf('=', i);
      const name = decode(target.slice(i, eq < 0 || eq > amp ? amp : eq));
      if (!out.has(name)) out.set(name, eq < 0 || eq > amp ? '' : decode(target.slice(eq + 1, amp)));
    }
    i = amp + 1;
  }
  return out;
}

function headersMatch(hs: readonly HeaderMatcher[], req: RequestView): boolean {
  for (const h of hs) {
    const v = req.header(h.name);
    if (v === undefined) return false;
    if (h.re !== undefined ? !h.re.test(v) : v !== h.exact) return false;
  }
  return true;
}

function pathMatches(e: HttpEntry, path: string): boolean {
  if (e.pathType === PATH_EXACT) return path === e.pathValue;
  if (e.pathType === PATH_PREFIX) {
    const p = e.pathValue;
    return p.length === 0 || (path.startsWith(p) && (path.length === p.length || path.charCodeAt(p.length) === 0x2f));
  }
  return e.pathRe?.test(path) === true;
}

class CompiledServiceRoutes implements ServiceRoutes {
  readonly #producer: PortLists;
  readonly #consumers: ReadonlyMap<string, PortLists>;

  constructor(producer: PortLists, consumers: ReadonlyMap<string, PortLists>) {
    this.#producer = producer;
    this.#consumers = consumers;
  }

  match(req: RequestView, callerNamespace: string | undefined): RouteMatch | NoMatch {
    const consumer = callerNamespace === undefined ? undefined : this.#consumers.get(callerNamespace);
    let attached = consumer === undefined ? undefined : listFor(consumer, req.port);
    if (attached?.attached !== true) attached = listFor(this.#producer, req.port);
    if (!attached.attached) return NO_ROUTES;
    const list = attached.entries;
    const target = req.path;
    const q = target.indexOf('?');
    const path = q < 0 ? target : target.slice(0, q);
    let query: ReadonlyMap<string, string> | undefined;
    // gRPC `/<service>/<method>`: split only if a regex needs the parts.
    let grpcSplit = false;
    let grpcService: string | undefined;
    let grpcMethod: string | undefined;
    for (const e of list) {
      if (e.kind === 'http') {
        if (e.method !== undefined && e.method !== req.method) continue;
        if (!pathMatches(e, path)) continue;
        if (!headersMatch(e.headers, req)) continue;
        if (e.query.length > 0) {
          query ??= parseQuery(target, q);
          let ok = true;
          for (const m of e.query) {
            const v = query.get(m.name);
            if (v === undefined || (m.re !== undefined ? !m.re.test(v) : v !== m.exact)) { ok = false; break; }
          }
          if (!ok) continue;
        }
        return e.result;
      }
      if (!grpcMatches(e, path)) {
        if (e.serviceRe === undefined && e.methodRe === undefined) continue;
        if (!grpcSplit) {
          grpcSplit = true;
          const slash = path.indexOf('/', 1);
          if (path.charCodeAt(0) === 0x2f && slash > 1 && slash < path.length - 1 && path.indexOf('/', slash + 1) < 0) {
            grpcService = path.slice(1, slash);
            grpcMethod = path.slice(slash + 1);
          }
        }
        if (grpcService === undefined || grpcMethod === undefined) continue;
        if (e.serviceRe !== undefined && !e.serviceRe.test(grpcService)) continue;
        if (e.methodRe !== undefined && !e.methodRe.test(grpcMethod)) continue;
      }
      if (!headersMatch(e.headers, req)) continue;
      return e.result;
    }
    return NO_MATCH;
  }
}

/**
 * The Exact part of a gRPC match, without splitting the path: true when it matches, false
 * when it does not or when a regex still has to decide (the caller checks those).
 */
function grpcMatches(e: GrpcEntry, path: string): boolean {
  if (e.serviceRe !== undefined || e.methodRe !== undefined) return false;
  if (e.fullPath !== undefined) return path === e.fullPath;
  const slash = path.indexOf('/', 1);
  const wellFormed = path.charCodeAt(0) === 0x2f && slash > 1 && slash < path.length - 1 && path.indexOf('/', slash + 1) < 0;
  if (e.serviceExact === undefined && e.methodExact === undefined) return true;
  if (!wellFormed) return false;
  if (e.serviceExact !== undefined) return slash === e.serviceExact.length + 1 && path.startsWith(e.serviceExact, 1);
  const m = e.methodExact ?? '';
  return path.length - slash - 1 === m.length && path.endsWith(m);
}

/** The port a Service parentRef selects (undefined: every port), or null when it selects none. */
function parentPort(ref: { sectionName?: string | undefined; port?: number | undefined }, svc: Service): number | undefined | null {
  if (ref.sectionName === undefined) return ref.port;
  const named = svc.ports.find((p) => p.name === ref.sectionName);
  if (named === undefined || (ref.port !== undefined && ref.port !== named.port)) return null;
  return named.port;
}

/** Compiles the routes of a config version (a waypoint's ProxyConfig has these fields). */
export function compileRouteTable(config: { readonly version: number; readonly services: ReadonlyMap<string, Service>; readonly l7: ReadonlyMap<string, L7Resource> }): RouteTable {
  const bySvc = new Map<string, { producer: Attachment[]; consumers: Map<string, Attachment[]> }>();
  for (const res of config.l7.values()) {
    if (res.kind !== 'HTTPRoute' && res.kind !== 'GRPCRoute') continue;
    let compiled: CompiledRoute | undefined;
    for (const ref of res.spec.parentRefs ?? []) {
      if (ref.kind !== 'Service' || ref.group !== '') continue;
      const key = `${ref.namespace ?? res.namespace}/${ref.name}`;
      const svc = config.services.get(key);
      if (svc === undefined) continue;
      const port = parentPort(ref, svc);
      if (port === null) continue;
      compiled ??= compileRoute(res);
      let s = bySvc.get(key);
      if (s === undefined) bySvc.set(key, (s = { producer: [], consumers: new Map() }));
      if (res.namespace === svc.namespace) s.producer.push({ route: compiled, port });
      else {
        let c = s.consumers.get(res.namespace);
        if (c === undefined) s.consumers.set(res.namespace, (c = []));
        c.push({ route: compiled, port });
      }
    }
  }
  const tables = new Map<string, ServiceRoutes>();
  for (const [key, s] of bySvc) {
    const consumers = new Map<string, PortLists>();
    for (const [ns, atts] of s.consumers) consumers.set(ns, portLists(atts));
    tables.set(key, new CompiledServiceRoutes(portLists(s.producer), consumers));
  }
  const services = Object.freeze([...tables.keys()].sort());
  return Object.freeze({ version: config.version, services, forService: (key: string) => tables.get(key) });
}

/** Convenience: the match for a request to service `key` (no routes when it has none). */
export function matchRoute(table: RouteTable, key: string, req: RequestView, callerNamespace: string | undefined): RouteMatch | NoMatch {
  return table.forService(key)?.match(req, callerNamespace) ?? NO_ROUTES;
}

/**
 * Weighted choice: `random` in [0, 1) picks the backend whose share of the total weight
 * covers it. Undefined when there is none to pick (no backends, or every weight 0: the
 * Gateway API answers 500 then).
 */
export function pickBackend(b: WeightedBackends, random: number): RouteBackend | undefined {
  if (b.total <= 0) return undefined;
  const x = Math.min(Math.max(random, 0), 1) * b.total;
  for (let i = 0; i < b.list.length; i++) if (x < (b.cumulative[i] ?? 0)) return b.list[i];
  // random = 1 (outside the contract): the last backend with weight.
  for (let i = b.list.length - 1; i >= 0; i--) if ((b.list[i]?.weight ?? 0) > 0) return b.list[i];
  return undefined;
}
