/**
 * A Kubernetes API server double for list/watch clients: a real HTTP server on 127.0.0.1:0
 * that keeps objects per kind under one etcd-like resourceVersion counter and answers with
 * the API server's own shapes — `<Kind>List` with `metadata.resourceVersion` and chunking
 * (`limit`/`continue`), chunked watch streams of `{type, object}` lines from a
 * resourceVersion, BOOKMARK events when asked for, `410 Expired` ERROR events once history
 * is compacted, `Status` bodies for errors. Tests drive it (apply, delete, compact, drop
 * watches, fail requests, hide a kind) and read back the requests it saw.
 *
 * It deliberately shares no code with the source under test.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { KubeConfig } from '@kubernetes/client-node';

interface KindDef { path: string; apiVersion: string; namespaced: boolean; builtin: boolean }

const GW = 'gateway.networking.k8s.io/v1';
/** The kinds the double serves, at their real API paths. */
export const DOUBLE_KINDS: Readonly<Record<string, KindDef>> = {
  Namespace: { path: '/api/v1/namespaces', apiVersion: 'v1', namespaced: false, builtin: true },
  Node: { path: '/api/v1/nodes', apiVersion: 'v1', namespaced: false, builtin: true },
  Pod: { path: '/api/v1/pods', apiVersion: 'v1', namespaced: true, builtin: true },
  Service: { path: '/api/v1/services', apiVersion: 'v1', namespaced: true, builtin: true },
  EndpointSlice: { path: '/apis/discovery.k8s.io/v1/endpointslices', apiVersion: 'discovery.k8s.io/v1', namespaced: true, builtin: true },
  Gateway: { path: `/apis/${GW}/gateways`, apiVersion: GW, namespaced: true, builtin: false },
  HTTPRoute: { path: `/apis/${GW}/httproutes`, apiVersion: GW, namespaced: true, builtin: false },
  GRPCRoute: { path: `/apis/${GW}/grpcroutes`, apiVersion: GW, namespaced: true, builtin: false },
  AuthorizationPolicy: { path: '/apis/security.rondo.dev/v1alpha1/authorizationpolicies', apiVersion: 'security.rondo.dev/v1alpha1', namespaced: true, builtin: false },
  PeerAuthentication: { path: '/apis/security.rondo.dev/v1alpha1/peerauthentications', apiVersion: 'security.rondo.dev/v1alpha1', namespaced: true, builtin: false },
  TrafficPolicy: { path: '/apis/traffic.rondo.dev/v1alpha1/trafficpolicies', apiVersion: 'traffic.rondo.dev/v1alpha1', namespaced: true, builtin: false },
};

/** An object as a test hands it in: kind and metadata.name required. */
export interface DoubleObject {
  apiVersion?: string;
  kind: string;
  metadata: { name: string; namespace?: string; [k: string]: unknown };
  [field: string]: unknown;
}

/** One request the double received. */
export interface RecordedRequest {
  kind: string | undefined;
  path: string;
  watch: boolean;
  query: Record<string, string>;
  authorization: string | undefined;
  /** HTTP method (GET for lists and watches). */
  method?: string;
  /** Content-Type of a request with a body. */
  contentType?: string | undefined;
  /** Parsed JSON body of a PATCH/POST. */
  body?: unknown;
}

interface Stored { obj: Record<string, unknown>; rv: number }
interface HistoryEvent { rv: number; kind: string; type: 'ADDED' | 'MODIFIED' | 'DELETED'; object: Record<string, unknown> }
interface Watcher { kind: string; res: ServerResponse; bookmarks: boolean }
interface Failure { code: number; times: number }
type Waiter = { pred: (r: RecordedRequest) => boolean; resolve: (r: RecordedRequest) => void };

function status(code: number, reason: string, message: string): Record<string, unknown> {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, details: {}, code };
}

const REASONS: Record<number, string> = { 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 410: 'Expired', 429: 'TooManyRequests', 500: 'InternalError', 503: 'ServiceUnavailable' };

/** RFC 7386 JSON merge patch: objects merge, null deletes, anything else (lists too) replaces. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> = target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** The API server double. */
export class KubeApiDouble {
  /** Base URL, e.g. http://127.0.0.1:41234. */
  readonly url: string;
  /** Every request in arrival order. */
  readonly requests: RecordedRequest[] = [];
  /** Bearer token clients must present. */
  readonly token = 'double-token';
  readonly #server: Server;
  readonly #objects = new Map<string, Map<string, Stored>>();
  #history: HistoryEvent[] = [];
  #rv = 100;
  #compactedRv = 0;
  readonly #watchers = new Set<Watcher>();
  readonly #missing = new Set<string>();
  readonly #listFailures = new Map<string, Failure>();
  readonly #watchFailures = new Map<string, Failure>();
  readonly #continues = new Map<string, { items: Record<string, unknown>[]; rv: number }>();
  #waiters: Waiter[] = [];

  private constructor(server: Server, url: string) {
    this.#server = server;
    this.url = url;
    server.on('request', (req, res) => this.#handle(req, res));
  }

  /** Starts the double on 127.0.0.1, an ephemeral port. */
  static async create(): Promise<KubeApiDouble> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const { port } = server.address() as AddressInfo;
    return new KubeApiDouble(server, `http://127.0.0.1:${port}`);
  }

  /** A KubeConfig pointing at the double, with its bearer token. */
  kubeConfig(): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'double', server: this.url, skipTLSVerify: true }],
      users: [{ name: 'rondo-controller', token: this.token }],
      contexts: [{ name: 'double', cluster: 'double', user: 'rondo-controller' }],
      currentContext: 'double',
    });
    return kc;
  }

  /** The current (latest) resourceVersion. */
  get resourceVersion(): string {
    return String(this.#rv);
  }

  /** Creates or updates an object (ADDED / MODIFIED event); returns it as stored. */
  apply(input: DoubleObject): Record<string, unknown> {
    const def = this.#def(input.kind);
    const byKey = this.#kindMap(input.kind);
    const key = this.#key(input.metadata.namespace, input.metadata.name);
    const prev = byKey.get(key);
    const rv = ++this.#rv;
    const prevMeta = (prev?.obj['metadata'] ?? {}) as Record<string, unknown>;
    const obj: Record<string, unknown> = structuredClone({ ...input, apiVersion: def.apiVersion, kind: input.kind });
    // Like a CRD with a status subresource: writes to the main resource never change status.
    if (!def.builtin && prev !== undefined) {
      if (prev.obj['status'] === undefined) delete obj['status'];
      else obj['status'] = structuredClone(prev.obj['status']);
    }
    obj['metadata'] = {
      ...input.metadata,
      uid: prevMeta['uid'] ?? randomUUID(),
      creationTimestamp: prevMeta['creationTimestamp'] ?? new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      generation: typeof prevMeta['generation'] === 'number' ? prevMeta['generation'] + 1 : 1,
      resourceVersion: String(rv),
    };
    byKey.set(key, { obj, rv });
    this.#emit({ rv, kind: input.kind, type: prev === undefined ? 'ADDED' : 'MODIFIED', object: obj });
    return obj;
  }

  /** Deletes an object (DELETED event with the final state); false if it did not exist. */
  delete(kind: string, namespace: string | undefined, name: string): boolean {
    const byKey = this.#kindMap(kind);
    const key = this.#key(namespace, name);
    const prev = byKey.get(key);
    if (prev === undefined) return false;
    byKey.delete(key);
    const rv = ++this.#rv;
    const object = structuredClone(prev.obj);
    (object['metadata'] as Record<string, unknown>)['resourceVersion'] = String(rv);
    this.#emit({ rv, kind, type: 'DELETED', object });
    return true;
  }

  /** Forgets watch history up to now: a watch from an older resourceVersion gets 410. */
  compact(): void {
    this.#compactedRv = this.#rv;
    this.#history = [];
  }

  /** Makes a kind answer 404 (its CRD is not installed) or serves it again. */
  setMissing(kind: string, missing = true): void {
    if (missing) this.#missing.add(kind);
    else this.#missing.delete(kind);
  }

  /** The next `times` list (or watch) requests for a kind fail with `code` and a Status body. */
  failNext(kind: string, o: { watch: boolean; code: number; times?: number }): void {
    (o.watch ? this.#watchFailures : this.#listFailures).set(kind, { code: o.code, times: o.times ?? 1 });
  }

  /** Breaks open watch streams (socket reset mid-stream, or a clean end); returns how many. */
  dropWatches(kind?: string, o: { clean?: boolean } = {}): number {
    let n = 0;
    for (const w of [...this.#watchers]) {
      if (kind !== undefined && w.kind !== kind) continue;
      this.#watchers.delete(w);
      if (o.clean === true) w.res.end();
      else w.res.socket?.destroy();
      n++;
    }
    return n;
  }

  /** Sends a BOOKMARK at the current resourceVersion to watchers that asked for bookmarks. */
  bookmark(kind?: string): number {
    let n = 0;
    for (const w of this.#watchers) {
      if ((kind !== undefined && w.kind !== kind) || !w.bookmarks) continue;
      const def = this.#def(w.kind);
      this.#send(w.res, { type: 'BOOKMARK', object: { kind: w.kind, apiVersion: def.apiVersion, metadata: { resourceVersion: String(this.#rv) } } });
      n++;
    }
    return n;
  }

  /** Writes one raw line to a kind's watch streams (to feed clients malformed events). */
  emitRaw(kind: string, line: string): number {
    let n = 0;
    for (const w of this.#watchers) if (w.kind === kind) { w.res.write(line + '\n'); n++; }
    return n;
  }

  /** Number of open watch streams (for one kind or all). */
  watchCount(kind?: string): number {
    return [...this.#watchers].filter((w) => kind === undefined || w.kind === kind).length;
  }

  /** Resolves with the first request (from index `from` on) matching `pred`, waiting if needed. */
  waitForRequest(pred: (r: RecordedRequest) => boolean, from = 0): Promise<RecordedRequest> {
    const seen = this.requests.slice(from).find(pred);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve) => this.#waiters.push({ pred, resolve }));
  }

  /** Closes every stream and connection and stops listening. */
  async close(): Promise<void> {
    for (const w of this.#watchers) w.res.socket?.destroy();
    this.#watchers.clear();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #def(kind: string): KindDef {
    const def = DOUBLE_KINDS[kind];
    if (def === undefined) throw new Error(`kube-api-double: unknown kind ${kind}`);
    return def;
  }

  #kindMap(kind: string): Map<string, Stored> {
    this.#def(kind);
    let m = this.#objects.get(kind);
    if (m === undefined) this.#objects.set(kind, (m = new Map<string, Stored>()));
    return m;
  }

  #key(namespace: string | undefined, name: string): string {
    return `${namespace ?? ''}/${name}`;
  }

  #emit(ev: HistoryEvent): void {
    this.#history.push(ev);
    for (const w of this.#watchers) if (w.kind === ev.kind) this.#send(w.res, { type: ev.type, object: ev.object });
  }

  #send(res: ServerResponse, ev: Record<string, unknown>): void {
    res.write(JSON.stringify(ev) + '\n');
  }

  #json(res: ServerResponse, code: number, body: unknown): void {
    res.writeHead(code, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const u = new URL(req.url ?? '/', this.url);
    const kind = Object.keys(DOUBLE_KINDS).find((k) => DOUBLE_KINDS[k]?.path === u.pathname);
    const query = Object.fromEntries(u.searchParams);
    const rec: RecordedRequest = { kind, path: u.pathname, watch: query['watch'] === 'true' || query['watch'] === '1', query, authorization: req.headers.authorization };
    this.requests.push(rec);
    const ready = this.#waiters.filter((w) => w.pred(rec));
    this.#waiters = this.#waiters.filter((w) => !ready.includes(w));
    for (const w of ready) w.resolve(rec);

    if (req.headers.authorization !== `Bearer ${this.token}`) return this.#json(res, 401, status(401, 'Unauthorized', 'Unauthorized'));
    if (req.method === 'PATCH' || req.method === 'POST') {
      rec.method = req.method;
      rec.contentType = req.headers['content-type'];
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        try {
          rec.body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          return this.#json(res, 400, status(400, 'BadRequest', 'request body is not JSON'));
        }
        if (req.method === 'PATCH') this.#patchStatus(u.pathname, rec, res);
        else this.#post(u.pathname, rec, res);
      });
      return;
    }
    if (req.method !== 'GET') return this.#json(res, 405, status(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`));
    if (kind === undefined || this.#missing.has(kind)) return this.#json(res, 404, status(404, 'NotFound', 'the server could not find the requested resource'));
    const failures = rec.watch ? this.#watchFailures : this.#listFailures;
    const f = failures.get(kind);
    if (f !== undefined) {
      if (--f.times <= 0) failures.delete(kind);
      return this.#json(res, f.code, status(f.code, REASONS[f.code] ?? 'InternalError', `injected failure ${f.code}`));
    }
    if (rec.watch) this.#watch(kind, query, res);
    else this.#list(kind, query, res);
  }

  /** Status writes the double accepted, in order (kind/namespace/name and the patch body). */
  readonly statusPatches: { kind: string; namespace: string; name: string; body: unknown }[] = [];
  /** Failures for the next status patches (e.g. 403 for missing RBAC). */
  readonly #patchFailures: number[] = [];

  /** The next status patch requests fail with these codes, in order. */
  failNextStatusPatch(...codes: number[]): void {
    this.#patchFailures.push(...codes);
  }

  /** An object as stored (with status), or undefined. */
  get(kind: string, namespace: string | undefined, name: string): Record<string, unknown> | undefined {
    const s = this.#kindMap(kind).get(this.#key(namespace, name));
    return s === undefined ? undefined : structuredClone(s.obj);
  }

  readonly #saTokens = new Map<string, { namespace: string; name: string; node?: string; audiences: string[] }>();

  /** Registers a ServiceAccount token TokenReview will accept (pod-bound when `node` is given). */
  addServiceAccountToken(token: string, sa: { namespace: string; name: string; node?: string; audiences?: string[] }): void {
    this.#saTokens.set(token, { ...sa, audiences: sa.audiences ?? ['https://kubernetes.default.svc'] });
  }

  /**
   * `POST /apis/authentication.k8s.io/v1/tokenreviews`, answered like kube-apiserver: the
   * review echoed back with `status` filled in; an unknown token or a foreign audience gives
   * `authenticated` absent and an `error`, still with HTTP 201.
   */
  #post(path: string, rec: RecordedRequest, res: ServerResponse): void {
    if (path !== '/apis/authentication.k8s.io/v1/tokenreviews') return this.#json(res, 404, status(404, 'NotFound', 'the server could not find the requested resource'));
    const body = (rec.body ?? {}) as { spec?: { token?: string; audiences?: string[] } };
    const spec = body.spec ?? {};
    const review = { kind: 'TokenReview', apiVersion: 'authentication.k8s.io/v1', metadata: { creationTimestamp: null }, spec };
    const sa = this.#saTokens.get(spec.token ?? '');
    const wanted = spec.audiences ?? ['https://kubernetes.default.svc'];
    if (sa === undefined) return this.#json(res, 201, { ...review, status: { user: {}, error: '[invalid bearer token, service account token has been invalidated]' } });
    const audiences = wanted.filter((a) => sa.audiences.includes(a));
    if (audiences.length === 0) return this.#json(res, 201, { ...review, status: { user: {}, error: `[invalid bearer token, token audiences ${JSON.stringify(sa.audiences)} is invalid for the target audiences ${JSON.stringify(wanted)}]` } });
    const extra: Record<string, string[]> = { 'authentication.kubernetes.io/credential-id': [`JTI=${randomUUID()}`] };
    if (sa.node !== undefined) {
      extra['authentication.kubernetes.io/node-name'] = [sa.node];
      extra['authentication.kubernetes.io/node-uid'] = [randomUUID()];
      extra['authentication.kubernetes.io/pod-name'] = [`${sa.name}-abcde`];
      extra['authentication.kubernetes.io/pod-uid'] = [randomUUID()];
    }
    this.#json(res, 201, {
      ...review,
      status: {
        authenticated: true,
        user: { username: `system:serviceaccount:${sa.namespace}:${sa.name}`, uid: randomUUID(), groups: ['system:serviceaccounts', `system:serviceaccounts:${sa.namespace}`, 'system:authenticated'], extra },
        audiences,
      },
    });
  }

  /**
   * `PATCH /apis/<group>/<version>/namespaces/<ns>/<plural>/<name>/status` with a JSON merge
   * patch (RFC 7386): only `status` changes, resourceVersion moves, generation does not,
   * watchers see MODIFIED, and the reply is the whole object — as kube-apiserver does.
   */
  #patchStatus(path: string, rec: RecordedRequest, res: ServerResponse): void {
    const m = /^\/apis\/([^/]+)\/([^/]+)\/namespaces\/([^/]+)\/([^/]+)\/([^/]+)\/status$/.exec(path);
    const kind = m === null ? undefined : Object.keys(DOUBLE_KINDS).find((k) => DOUBLE_KINDS[k]?.path === `/apis/${m[1]}/${m[2]}/${m[4]}`);
    if (m === null || kind === undefined || DOUBLE_KINDS[kind]?.builtin === true) return this.#json(res, 404, status(404, 'NotFound', 'the server could not find the requested resource'));
    rec.kind = kind;
    if (rec.contentType?.split(';')[0]?.trim() !== 'application/merge-patch+json') {
      return this.#json(res, 415, status(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml`));
    }
    const failure = this.#patchFailures.shift();
    if (failure !== undefined) return this.#json(res, failure, status(failure, REASONS[failure] ?? 'InternalError', `injected failure ${failure}`));
    const [ns = '', name = ''] = [m[3], m[5]];
    const byKey = this.#kindMap(kind);
    const prev = byKey.get(this.#key(ns, name));
    if (prev === undefined) return this.#json(res, 404, status(404, 'NotFound', `${DOUBLE_KINDS[kind]?.path.split('/').pop() ?? kind} "${name}" not found`));
    const patch = (rec.body ?? {}) as Record<string, unknown>;
    const obj = structuredClone(prev.obj);
    const merged = mergePatch({ status: obj['status'] }, { status: patch['status'] }) as Record<string, unknown>;
    if (merged['status'] === undefined) delete obj['status'];
    else obj['status'] = merged['status'];
    const rv = ++this.#rv;
    (obj['metadata'] as Record<string, unknown>)['resourceVersion'] = String(rv);
    byKey.set(this.#key(ns, name), { obj, rv });
    this.statusPatches.push({ kind, namespace: ns, name, body: rec.body });
    this.#emit({ rv, kind, type: 'MODIFIED', object: obj });
    this.#json(res, 200, obj);
  }

  #list(kind: string, query: Record<string, string>, res: ServerResponse): void {
    const def = this.#def(kind);
    let items: Record<string, unknown>[];
    let rv = this.#rv;
    const cont = query['continue'];
    if (cont !== undefined && cont !== '') {
      const snap = this.#continues.get(cont);
      if (snap === undefined) return this.#json(res, 410, status(410, 'Expired', 'The provided continue parameter is too old to display a consistent list result.'));
      this.#continues.delete(cont);
      items = snap.items;
      rv = snap.rv;
    } else {
      items = [...this.#kindMap(kind).entries()]
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([, s]) => {
          const o = structuredClone(s.obj);
          // The API server omits kind/apiVersion on items of built-in lists; CRs keep theirs.
          if (def.builtin) { delete o['kind']; delete o['apiVersion']; }
          return o;
        });
    }
    const limit = Number(query['limit'] ?? '0');
    const meta: Record<string, unknown> = { resourceVersion: String(rv) };
    let page = items;
    if (limit > 0 && items.length > limit) {
      page = items.slice(0, limit);
      const token = randomUUID();
      this.#continues.set(token, { items: items.slice(limit), rv });
      meta['continue'] = token;
      meta['remainingItemCount'] = items.length - limit;
    }
    this.#json(res, 200, { kind: `${kind}List`, apiVersion: def.apiVersion, metadata: meta, items: page });
  }

  #watch(kind: string, query: Record<string, string>, res: ServerResponse): void {
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();
    const from = query['resourceVersion'] ?? '';
    if (from !== '' && from !== '0' && Number(from) < this.#compactedRv) {
      // What kube-apiserver does for a compacted revision: 200, one ERROR event, end of stream.
      this.#send(res, { type: 'ERROR', object: status(410, 'Expired', `too old resource version: ${from} (${this.#compactedRv})`) });
      res.end();
      return;
    }
    if (from === '' || from === '0') {
      for (const s of this.#kindMap(kind).values()) this.#send(res, { type: 'ADDED', object: s.obj });
    } else {
      for (const ev of this.#history) if (ev.kind === kind && ev.rv > Number(from)) this.#send(res, { type: ev.type, object: ev.object });
    }
    const w: Watcher = { kind, res, bookmarks: query['allowWatchBookmarks'] === 'true' };
    this.#watchers.add(w);
    res.on('close', () => this.#watchers.delete(w));
  }
}
