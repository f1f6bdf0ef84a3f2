/**
 * Who may connect to the push server. The lab uses a token file (one bootstrap token per
 * proxy); in Kubernetes a TokenReview-based authenticator implements the same interface.
 */
import { readFile, stat } from 'node:fs/promises';
import { timingSafeEqual, createHash } from 'node:crypto';
import { z } from 'zod';
import { ProxyIdentity, describeZodError } from '../../common/wire.ts';
import { RondoError, errorMessage } from '../../common/errors.ts';
import type { Clock } from '../../common/clock.ts';
import { realClock } from '../../common/clock.ts';

/** Raised when a proxy cannot be authenticated; the push server answers 401. */
export class AuthenticationError extends RondoError {
  constructor(message: string) {
    super('RONDO_E_AUTH', message);
    this.name = 'AuthenticationError';
  }
}

/** Checks a bearer token and says which proxy it belongs to. */
export interface Authenticator {
  /** Resolves with the identity the token grants; rejects with AuthenticationError. */
  authenticate(req: { token: string | undefined; remoteAddress: string }): Promise<ProxyIdentity>;
}

const TokenFile = z.record(z.string().min(16, 'tokens must be at least 16 characters'), ProxyIdentity);

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

interface Entry { hash: Buffer; identity: ProxyIdentity }

function entriesOf(tokens: Record<string, ProxyIdentity>): Entry[] {
  return Object.entries(tokens).map(([t, identity]) => ({ hash: digest(t), identity }));
}

/** Inode, size and mtime: an atomic rename (a new inode) or an in-place write both change it. */
async function stampOf(file: string): Promise<string> {
  const s = await stat(file, { bigint: true });
  return `${s.ino}:${s.size}:${s.mtimeNs}`;
}

async function readTokenFile(file: string): Promise<Record<string, ProxyIdentity>> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    throw new RondoError('RONDO_E_CONFIG', `cannot read token file ${file}: ${errorMessage(e)} (expected JSON {"<token>": {"kind":"node-agent","node":"<node>"}})`);
  }
  const r = TokenFile.safeParse(raw);
  if (!r.success) throw new RondoError('RONDO_E_CONFIG', `token file ${file} is invalid: ${describeZodError(r.error)}`);
  return r.data;
}

/** How a file-backed authenticator watches its file. */
export interface TokenFileOptions {
  /** Least time between two looks at the file (default 1000 ms): a flood of bad tokens costs one stat per period. */
  recheckMs?: number;
  clock?: Clock;
}

/**
 * Bootstrap tokens from a JSON file: `{"<token>": {"kind":"node-agent","node":"node-1"}, …}`.
 * Loaded from a file, it follows the file: proxies are added while the controller runs (the
 * lab writes a token for each waypoint it starts) and removed (a deleted waypoint's token
 * stops working). The file is looked at again when an authentication comes at least
 * `recheckMs` after the last look, and re-read only when its inode, size or mtime changed.
 * A file that became unreadable or invalid leaves the previous tokens in use, and the refusal
 * of an unknown token says why.
 */
export class TokenFileAuthenticator implements Authenticator {
  #entries: Entry[];
  readonly #file: string | undefined;
  readonly #recheckMs: number;
  readonly #clock: Clock;
  #stamp: string | undefined;
  #lastLook: number;
  #reloadError: string | undefined;
  #looking: Promise<void> | undefined;

  /** Fixed tokens (tests, bench); `load()` gives one that follows its file. */
  constructor(tokens: Record<string, ProxyIdentity>, o: TokenFileOptions & { file?: string; stamp?: string } = {}) {
    this.#entries = entriesOf(tokens);
    this.#file = o.file;
    this.#stamp = o.stamp;
    this.#recheckMs = o.recheckMs ?? 1000;
    this.#clock = o.clock ?? realClock;
    this.#lastLook = this.#clock.now();
  }

  /** Reads and validates the token file; errors name the file and the entry at fault. */
  static async load(file: string, o: TokenFileOptions = {}): Promise<TokenFileAuthenticator> {
    // Stamp first: a file replaced between the stat and the read is then read again later,
    // never missed.
    let stamp: string | undefined;
    try { stamp = await stampOf(file); } catch { /* readTokenFile reports it */ }
    const tokens = await readTokenFile(file);
    return new TokenFileAuthenticator(tokens, { ...o, file, ...(stamp !== undefined ? { stamp } : {}) });
  }

  /** Constant-time lookup of the token. */
  async authenticate(req: { token: string | undefined; remoteAddress: string }): Promise<ProxyIdentity> {
    if (req.token === undefined || req.token === '') {
      throw new AuthenticationError(`no bearer token from ${req.remoteAddress}`);
    }
    await this.#follow();
    const h = digest(req.token);
    let found: ProxyIdentity | undefined;
    // Every entry is compared, so the time taken does not say which one matched.
    for (const e of this.#entries) if (timingSafeEqual(e.hash, h)) found = e.identity;
    if (found === undefined) {
      const why = this.#reloadError !== undefined ? `; the token file could not be re-read (${this.#reloadError}), the previous tokens stay in use` : '';
      throw new AuthenticationError(`unknown bearer token from ${req.remoteAddress}${why}`);
    }
    return found;
  }

  async #follow(): Promise<void> {
    if (this.#file === undefined) return;
    if (this.#looking !== undefined) return this.#looking;
    const now = this.#clock.now();
    if (now - this.#lastLook < this.#recheckMs) return;
    this.#lastLook = now;
    this.#looking = this.#look(this.#file).finally(() => { this.#looking = undefined; });
    return this.#looking;
  }

  async #look(file: string): Promise<void> {
    let stamp: string;
    try {
      stamp = await stampOf(file);
    } catch (e) {
      this.#reloadError = `cannot read token file ${file}: ${errorMessage(e)}`;
      return;
    }
    if (stamp === this.#stamp) return;
    this.#stamp = stamp;
    try {
      this.#entries = entriesOf(await readTokenFile(file));
      this.#reloadError = undefined;
    } catch (e) {
      this.#reloadError = errorMessage(e);
    }
  }
}

/** Stable string key of a proxy identity (`node-agent/node-1`, `waypoint/demo/wp`). */
export function proxyKey(p: ProxyIdentity): string {
  return p.kind === 'node-agent' ? `node-agent/${p.node}` : `waypoint/${p.namespace}/${p.name}`;
}
