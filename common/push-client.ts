/**
 * The proxy side of the push protocol (common/wire.ts), used by the node agent and the
 * waypoint: connects to the controller over WebSocket/TLS, authenticates with a bearer
 * token, applies snapshots and deltas into a validated ProxyConfig, hands each to the proxy
 * (one at a time, in order), ACKs/NACKs once the proxy has taken it, signs CSRs, and
 * reconnects with jittered backoff while serving the last good configuration.
 */
import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import { Gauge, Counter, Registry } from 'prom-client';
import {
  ControllerMessage,
  FRAME_ENCODING,
  FRAME_ENCODING_HEADER,
  MAX_MESSAGE_BYTES,
  PUSH_PATH,
  REJECTED,
  RESOURCE_TYPES,
  ResourceSchemas,
  describeZodError,
  frameText,
} from './wire.ts';
import type { DeltaMessage, MeshConfig, ProxyIdentity, Rejection, ResourceEntry, ResourceType, SnapshotMessage } from './wire.ts';
import type { ProxyConfig } from './proxy-config.ts';
import type { Logger } from './log.ts';
import { RondoError, errorMessage } from './errors.ts';
import { Backoff } from './backoff.ts';
import { checkTrustBundle } from './cert-manager.ts';

/** Options of a PushClient (see the contract in the briefs). */
export interface PushClientOptions {
  /** `wss://<ip>:15012`; the push path is appended when absent. */
  url: string;
  token: string;
  proxy: ProxyIdentity;
  /** Roots that the controller's serving certificate must chain to. */
  caPems: string[];
  /**
   * Applies a validated config (`prev`: the one the proxy serves now, if any). Returns or
   * resolves to what the proxy could not take (see Rejection in wire.ts); the proxy must then
   * serve `keptConfig(cfg, prev, rejected, kind)`. A throw or rejection counts as refusing
   * the whole config. Calls never overlap, and the controller gets its ACK/NACK only after
   * this settles, so it should settle once the config serves, not wait for slow side work.
   */
  onConfig: (cfg: ProxyConfig, prev: ProxyConfig | undefined, kind: 'snapshot' | 'delta') => Rejection[] | void | Promise<Rejection[] | void>;
  log: Logger;
  registry?: Registry;
  /** Reconnect delays (defaults 200 ms .. 30 s); tests shorten them. */
  backoff?: { initialMs?: number; maxMs?: number };
  /** How long a CSR may wait for its answer (default 30 s). */
  signTimeoutMs?: number;
  /** Clock in ms, for the config-age metric. */
  now?: () => number;
  /**
   * Silence after which the connection counts as dead and is replaced (default 60 s; the
   * controller pings every 20 s). Catches a controller that vanished without a FIN.
   */
  idleTimeoutMs?: number;
}

type Maps = { [T in ResourceType]: Map<string, unknown> };

interface PendingSign {
  resolve: (chain: string[]) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** Result of applying one controller message to the current config. */
interface Applied {
  config: ProxyConfig;
  rejected: Rejection[];
}

/** Keeps a proxy's configuration in sync with the controller. */
export class PushClient {
  readonly #o: PushClientOptions;
  readonly #url: string;
  readonly #backoff: Backoff;
  readonly #now: () => number;
  #ws: WebSocket | undefined;
  #config: ProxyConfig | undefined;
  #connected = false;
  #closed = false;
  #started = false;
  #timer: NodeJS.Timeout | undefined;
  #configAt = 0;
  #lastSeen = 0;
  #idleTimer: NodeJS.Timeout | undefined;
  #readyWaiters: ((c: ProxyConfig) => void)[] = [];
  #rejected: readonly Rejection[] = [];
  /** Tail of the apply queue (never rejects): snapshots and deltas are applied one by one. */
  #applying: Promise<void> = Promise.resolve();
  readonly #pending = new Map<string, PendingSign>();
  readonly #metrics: {
    connected: Gauge;
    reconnects: Counter;
    nacks: Counter;
    invalid: Counter;
    applied: Counter;
  };

  constructor(o: PushClientOptions) {
    this.#o = o;
    const u = new URL(o.url);
    if (u.protocol !== 'wss:') {
      throw new RondoError('RONDO_E_PUSH_URL', `controller URL ${o.url} must start with wss:// (the push channel is TLS only)`);
    }
    if (u.pathname === '/' || u.pathname === '') u.pathname = PUSH_PATH;
    this.#url = u.toString();
    this.#backoff = new Backoff({ initialMs: o.backoff?.initialMs ?? 200, maxMs: o.backoff?.maxMs ?? 30_000 });
    this.#now = o.now ?? Date.now;
    const registers = [o.registry ?? new Registry()];
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    this.#metrics = {
      connected: new Gauge({ name: 'rondo_push_connected', help: '1 while the push connection to the controller is up', registers }),
      reconnects: new Counter({ name: 'rondo_push_reconnects_total', help: 'Connection attempts to the controller after the first', registers }),
      nacks: new Counter({ name: 'rondo_push_rejected_resources_total', help: 'Pushed resources rejected (NACKed) by this proxy', registers }),
      invalid: new Counter({ name: 'rondo_push_invalid_messages_total', help: 'Malformed or oversized controller messages (connection closed)', registers }),
      applied: new Counter({ name: 'rondo_push_configs_applied_total', help: 'Snapshots and deltas applied', labelNames: ['type'], registers }),
    };
    new Gauge({
      name: 'rondo_push_config_age_seconds',
      help: 'Seconds since the last configuration was applied (-1 before the first)',
      registers,
      collect() {
        this.set(self.#config === undefined ? -1 : (self.#now() - self.#configAt) / 1000);
      },
    });
    new Gauge({
      name: 'rondo_push_config_version',
      help: 'Version of the configuration being served',
      registers,
      collect() {
        this.set(self.#config?.version ?? 0);
      },
    });
  }

  /** Starts connecting (and reconnecting) in the background. */
  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    const idle = this.#o.idleTimeoutMs ?? 60_000;
    this.#idleTimer = setInterval(() => {
      const ws = this.#ws;
      if (ws !== undefined && this.#connected && Date.now() - this.#lastSeen > idle) {
        this.#o.log.warn('controller silent; dropping the connection', { url: this.#url, silentMs: Date.now() - this.#lastSeen });
        ws.terminate();
      }
    }, Math.max(10, Math.floor(idle / 3)));
    this.#idleTimer.unref();
    this.#connect();
  }

  /** Stops reconnecting and closes the connection; idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    if (this.#idleTimer !== undefined) clearInterval(this.#idleTimer);
    for (const [id, p] of this.#pending) {
      clearTimeout(p.timer);
      p.reject(new RondoError('RONDO_E_CLOSED', `CSR ${id} abandoned: push client closed`));
    }
    this.#pending.clear();
    const ws = this.#ws;
    this.#ws = undefined;
    if (ws === undefined || ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => { ws.terminate(); resolve(); }, 1000);
      ws.once('close', () => { clearTimeout(t); resolve(); });
      ws.close(1000, 'proxy shutting down');
    });
  }

  /** True while the push connection is open. */
  get connected(): boolean {
    return this.#connected;
  }

  /** The last good configuration (kept while the controller is away). */
  get config(): ProxyConfig | undefined {
    return this.#config;
  }

  /** What the last snapshot or delta had refused (by validation or by onConfig); empty when it all applied. */
  get rejected(): readonly Rejection[] {
    return this.#rejected;
  }

  /** Resolves with the first configuration received. */
  ready(): Promise<ProxyConfig> {
    if (this.#config !== undefined) return Promise.resolve(this.#config);
    return new Promise((resolve) => this.#readyWaiters.push(resolve));
  }

  /** Has the controller sign a CSR for `identity`; resolves with the chain, leaf first. */
  sign(identity: string, csrPem: string): Promise<string[]> {
    const ws = this.#ws;
    if (ws === undefined || !this.#connected) {
      return Promise.reject(new RondoError('RONDO_E_PUSH_DISCONNECTED', `cannot sign ${identity}: not connected to the controller at ${this.#url}`));
    }
    const id = randomUUID();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new RondoError('RONDO_E_CSR_TIMEOUT', `CSR for ${identity} got no answer from the controller within ${this.#o.signTimeoutMs ?? 30_000} ms`));
      }, this.#o.signTimeoutMs ?? 30_000);
      this.#pending.set(id, { resolve, reject, timer });
      ws.send(JSON.stringify({ type: 'csr', id, identity, csr: csrPem }));
    });
  }

  #connect(): void {
    if (this.#closed) return;
    const log = this.#o.log;
    const ws = new WebSocket(this.#url, {
      ca: this.#o.caPems,
      // Big snapshots come as one shared compressed binary frame (see wire.ts "Framing").
      headers: { authorization: `Bearer ${this.#o.token}`, [FRAME_ENCODING_HEADER]: FRAME_ENCODING },
      maxPayload: MAX_MESSAGE_BYTES,
      minVersion: 'TLSv1.3',
      handshakeTimeout: 10_000,
    });
    this.#ws = ws;
    ws.on('ping', () => { this.#lastSeen = Date.now(); });
    ws.on('open', () => {
      this.#lastSeen = Date.now();
      this.#connected = true;
      this.#metrics.connected.set(1);
      // The Hello names the version the proxy holds, so it waits for an apply in progress.
      void this.#applying.then(() => {
        if (this.#ws !== ws || ws.readyState !== WebSocket.OPEN) return;
        log.info('connected to controller', { url: this.#url, lastVersion: this.#config?.version });
        const hello: Record<string, unknown> = { type: 'hello', proxy: this.#o.proxy };
        if (this.#config !== undefined) hello['lastVersion'] = this.#config.version;
        ws.send(JSON.stringify(hello));
      });
    });
    ws.on('message', (data, isBinary) => {
      this.#lastSeen = Date.now();
      let text: string;
      try {
        text = frameText(rawBuffer(data), isBinary);
      } catch (e) {
        return this.#protocolError(ws, errorMessage(e));
      }
      this.#onMessage(ws, text);
    });
    ws.on('unexpected-response', (_req, res) => {
      log.warn('controller refused the push connection', { status: res.statusCode, hint: 'check the bootstrap token and the proxy identity' });
      ws.terminate();
    });
    ws.on('error', (err) => {
      if ((err as { code?: string }).code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') this.#metrics.invalid.inc();
      log.warn('push connection error', { url: this.#url, err });
    });
    ws.on('close', (code, reason) => {
      const wasConnected = this.#connected;
      this.#connected = false;
      this.#metrics.connected.set(0);
      for (const [id, p] of this.#pending) {
        clearTimeout(p.timer);
        p.reject(new RondoError('RONDO_E_PUSH_DISCONNECTED', `CSR ${id} lost: controller connection closed`));
      }
      this.#pending.clear();
      if (this.#ws === ws) this.#ws = undefined;
      if (this.#closed) return;
      const delay = this.#backoff.next();
      if (wasConnected) log.warn('controller connection closed; serving last good config', { code, reason: reason.toString(), retryInMs: delay });
      this.#metrics.reconnects.inc();
      this.#timer = setTimeout(() => this.#connect(), delay);
    });
  }

  #protocolError(ws: WebSocket, reason: string): void {
    this.#metrics.invalid.inc();
    this.#o.log.warn('invalid message from controller; closing', { reason });
    ws.close(1008, reason.slice(0, 120));
  }

  #onMessage(ws: WebSocket, text: string): void {
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      return this.#protocolError(ws, 'message is not JSON');
    }
    const parsed = ControllerMessage.safeParse(raw);
    if (!parsed.success) return this.#protocolError(ws, `malformed message: ${describeZodError(parsed.error)}`);
    const msg = parsed.data;
    if (msg.type === 'cert') {
      const p = this.#pending.get(msg.id);
      if (p === undefined) return;
      this.#pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.chain !== undefined && msg.chain.length > 0) p.resolve(msg.chain);
      else p.reject(new RondoError('RONDO_E_CSR_REFUSED', `controller refused the CSR: ${msg.error ?? 'no reason given'}`));
      return;
    }
    this.#applying = this.#applying.then(() => this.#apply(ws, msg)).catch((e: unknown) => {
      this.#o.log.error('applying a pushed config failed', { version: msg.version, err: e instanceof Error ? e : errorMessage(e) });
    });
  }

  /** Validates one message, has the proxy apply it, records what the proxy holds, answers. */
  async #apply(ws: WebSocket, msg: SnapshotMessage | DeltaMessage): Promise<void> {
    // From a connection since replaced: its controller never hears back; the new one
    // starts from the Hello's version.
    if (this.#ws !== ws || this.#closed) return;
    const prev = this.#config;
    let applied: Applied;
    if (msg.type === 'snapshot') {
      applied = applySnapshot(msg);
    } else {
      if (prev === undefined) return this.#protocolError(ws, 'delta before any snapshot');
      applied = applyDelta(prev, msg);
    }
    const rejected = applied.rejected;
    // The schema takes any string as a root; a bundle the proxy cannot load is refused as a
    // whole here, so the mesh settings in force stay those of the previous config.
    const meshProblem = msg.mesh === undefined ? undefined : trustBundleProblem(msg.mesh);
    let cfg: ProxyConfig | undefined = applied.config;
    if (meshProblem !== undefined) {
      const r = { type: REJECTED.mesh, key: 'trustBundle', reason: meshProblem };
      rejected.push(r);
      cfg = keptConfig(cfg, prev, [r], msg.type);
    }
    let held = cfg;
    if (cfg !== undefined) {
      const byProxy = await this.#handToProxy(cfg, prev, msg.type);
      rejected.push(...byProxy);
      held = keptConfig(cfg, prev, byProxy, msg.type);
    }
    if (held !== undefined) {
      this.#config = held;
      this.#configAt = this.#now();
      this.#metrics.applied.inc({ type: msg.type });
    }
    this.#backoff.reset();
    this.#rejected = rejected;
    if (rejected.length > 0) {
      this.#metrics.nacks.inc(rejected.length);
      this.#o.log.warn('rejected pushed resources', { version: msg.version, rejected: rejected.slice(0, 20) });
    }
    if (this.#ws === ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify(rejected.length > 0
        ? { type: 'nack', version: msg.version, nonce: msg.nonce, rejected }
        : { type: 'ack', version: msg.version, nonce: msg.nonce }));
    }
    if (held !== undefined) {
      const waiters = this.#readyWaiters;
      this.#readyWaiters = [];
      for (const w of waiters) w(held);
    }
  }

  /** Calls onConfig; a throw is a refusal of the whole config, never a stuck queue. */
  async #handToProxy(cfg: ProxyConfig, prev: ProxyConfig | undefined, kind: 'snapshot' | 'delta'): Promise<Rejection[]> {
    let out: Rejection[] | void;
    try {
      out = await this.#o.onConfig(cfg, prev, kind);
    } catch (e) {
      this.#o.log.error('onConfig handler threw; the config counts as refused', { version: cfg.version, err: e instanceof Error ? e : errorMessage(e) });
      return [{ type: REJECTED.config, key: '*', reason: `proxy failed to apply the config: ${errorMessage(e)}` }];
    }
    if (!Array.isArray(out)) return [];
    // Normalized: anything else in a rejection would make the controller drop the NACK.
    return out.map((r) => ({ type: String(r.type), key: String(r.key), reason: String(r.reason) }));
  }
}

/** Why a mesh config's trust bundle cannot be loaded, or undefined when it can. */
function trustBundleProblem(mesh: MeshConfig): string | undefined {
  try {
    checkTrustBundle(mesh.trustBundle);
    return undefined;
  } catch (e) {
    return errorMessage(e);
  }
}

/**
 * What a proxy holds after refusing `rejected` of `cfg` while serving `prev` (the rules of
 * Rejection in wire.ts; the controller tracks the same): a refused resource keeps its
 * previous value after a delta and is absent after a snapshot; a refused mesh keeps the
 * previous mesh settings (undefined: nothing to serve without them); `config` keeps `prev`'s
 * contents. The version is `cfg`'s: the proxy has answered that version.
 */
export function keptConfig(cfg: ProxyConfig | undefined, prev: ProxyConfig | undefined, rejected: readonly Rejection[], kind: 'snapshot' | 'delta'): ProxyConfig | undefined {
  if (cfg === undefined || rejected.length === 0) return cfg;
  if (rejected.some((r) => r.type === REJECTED.config)) return prev === undefined ? undefined : toConfig(cfg.version, prev.mesh, mapsOf(prev));
  let mesh = cfg.mesh;
  if (rejected.some((r) => r.type === REJECTED.mesh)) {
    if (prev === undefined) return undefined;
    mesh = prev.mesh;
  }
  const maps = mapsOf(cfg);
  for (const type of RESOURCE_TYPES) {
    const keys = rejected.filter((r) => r.type === type).map((r) => r.key);
    if (keys.length === 0) continue;
    const next = new Map(maps[type]);
    for (const k of keys) {
      const old = kind === 'delta' ? (prev?.[type] as ReadonlyMap<string, unknown> | undefined)?.get(k) : undefined;
      if (old === undefined) next.delete(k);
      else next.set(k, old);
    }
    maps[type] = next;
  }
  return toConfig(cfg.version, mesh, maps);
}

function mapsOf(cfg: ProxyConfig): Maps {
  const maps = {} as Maps;
  for (const type of RESOURCE_TYPES) maps[type] = cfg[type] as Map<string, unknown>;
  return maps;
}

function emptyMaps(): Maps {
  return { workloads: new Map(), services: new Map(), authorizationPolicies: new Map(), peerAuthentications: new Map(), l7: new Map() };
}

/** Validates each entry alone; good ones go into `into`, bad ones are returned. */
function applyEntries(type: ResourceType, entries: ResourceEntry[] | undefined, into: Map<string, unknown>, rejected: Rejection[]): void {
  if (entries === undefined) return;
  const schema = ResourceSchemas[type];
  for (const e of entries) {
    const r = schema.safeParse(e.value);
    if (r.success) into.set(e.key, Object.freeze(r.data));
    else rejected.push({ type, key: e.key, reason: describeZodError(r.error) });
  }
}

/** Builds a fresh config from a snapshot; pure apart from validation. */
export function applySnapshot(msg: SnapshotMessage): Applied {
  const maps = emptyMaps();
  const rejected: Rejection[] = [];
  for (const type of RESOURCE_TYPES) applyEntries(type, msg.resources[type], maps[type], rejected);
  return { config: toConfig(msg.version, msg.mesh, maps), rejected };
}

/** Applies a delta on top of `cfg` (copy-on-write: cfg itself is not changed). */
export function applyDelta(cfg: ProxyConfig, msg: DeltaMessage): Applied {
  const rejected: Rejection[] = [];
  const maps = {} as Maps;
  for (const type of RESOURCE_TYPES) {
    const ups = msg.upserts[type];
    const rms = msg.removes[type];
    const cur = cfg[type] as ReadonlyMap<string, unknown>;
    if ((ups === undefined || ups.length === 0) && (rms === undefined || rms.length === 0)) {
      maps[type] = cur as Map<string, unknown>;
      continue;
    }
    const next = new Map(cur);
    for (const k of rms ?? []) next.delete(k);
    applyEntries(type, ups, next, rejected);
    maps[type] = next;
  }
  return { config: toConfig(msg.version, msg.mesh ?? cfg.mesh, maps), rejected };
}

function toConfig(version: number, mesh: ProxyConfig['mesh'], maps: Maps): ProxyConfig {
  return Object.freeze({
    version,
    mesh,
    workloads: maps.workloads,
    services: maps.services,
    authorizationPolicies: maps.authorizationPolicies,
    peerAuthentications: maps.peerAuthentications,
    l7: maps.l7,
  }) as unknown as ProxyConfig;
}

/** Bytes of a ws message (Buffer, fragments or ArrayBuffer). */
function rawBuffer(data: WebSocket.RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
