/**
 * Who may connect to the push server. The lab uses a token file (one bootstrap token per
 * proxy); in Kubernetes a TokenReview-based authenticator implements the same interface.
 */
import { readFile } from 'node:fs/promises';
import { timingSafeEqual, createHash } from 'node:crypto';
import { z } from 'zod';
import { ProxyIdentity, describeZodError } from '../../common/wire.ts';
import { RondoError, errorMessage } from '../../common/errors.ts';

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

/** Bootstrap tokens from a JSON file: `{"<token>": {"kind":"node-agent","node":"node-1"}, …}`. */
export class TokenFileAuthenticator implements Authenticator {
  readonly #entries: { hash: Buffer; identity: ProxyIdentity }[];

  constructor(tokens: Record<string, ProxyIdentity>) {
    this.#entries = Object.entries(tokens).map(([t, identity]) => ({ hash: digest(t), identity }));
  }

  /** Reads and validates the token file; errors name the file and the entry at fault. */
  static async load(file: string): Promise<TokenFileAuthenticator> {
    let raw: unknown;
    try {
      raw = JSON.parse(await readFile(file, 'utf8'));
    } catch (e) {
      throw new RondoError('RONDO_E_CONFIG', `cannot read token file ${file}: ${errorMessage(e)} (expected JSON {"<token>": {"kind":"node-agent","node":"<node>"}})`);
    }
    const r = TokenFile.safeParse(raw);
    if (!r.success) throw new RondoError('RONDO_E_CONFIG', `token file ${file} is invalid: ${describeZodError(r.error)}`);
    return new TokenFileAuthenticator(r.data);
  }

  /** Constant-time lookup of the token. */
  authenticate(req: { token: string | undefined; remoteAddress: string }): Promise<ProxyIdentity> {
    if (req.token === undefined || req.token === '') {
      return Promise.reject(new AuthenticationError(`no bearer token from ${req.remoteAddress}`));
    }
    const h = digest(req.token);
    let found: ProxyIdentity | undefined;
    for (const e of this.#entries) if (timingSafeEqual(e.hash, h)) found = e.identity;
    if (found === undefined) return Promise.reject(new AuthenticationError(`unknown bearer token from ${req.remoteAddress}`));
    return Promise.resolve(found);
  }
}

/** Stable string key of a proxy identity (`node-agent/node-1`, `waypoint/demo/wp`). */
export function proxyKey(p: ProxyIdentity): string {
  return p.kind === 'node-agent' ? `node-agent/${p.node}` : `waypoint/${p.namespace}/${p.name}`;
}
