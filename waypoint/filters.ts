/**
 * Gateway API filters as pure functions over a request's parts: header modifiers, URL
 * rewrite, redirects and the mirror share. The proxy applies the result; nothing here does I/O.
 *
 * Headers are a plain object with lower-case names (what Node's parsers hand over), values a
 * string or, for repeated headers, a string array. Semantics (Gateway API HTTPHeaderFilter):
 * `set` replaces every value of the name, `add` appends one more value, `remove` drops the
 * name; names compare case-insensitively; the order is set, add, remove as the spec lists.
 */
import type { HTTPHeaderFilter, HTTPPathModifier, HTTPRequestMirrorFilter, HTTPRequestRedirectFilter } from '../common/gateway-api.ts';

/** Request or response headers by lower-case name. */
export type HeaderMap = Record<string, string | string[] | undefined>;

/** Applies one header filter in place. */
export function applyHeaderFilter(headers: HeaderMap, f: HTTPHeaderFilter): void {
  if (f.set !== undefined) for (const h of f.set) headers[h.name.toLowerCase()] = h.value;
  if (f.add !== undefined) {
    for (const h of f.add) {
      const k = h.name.toLowerCase();
      const prev = headers[k];
      headers[k] = prev === undefined ? h.value : Array.isArray(prev) ? [...prev, h.value] : [prev, h.value];
    }
  }
  if (f.remove !== undefined) for (const name of f.remove) delete headers[name.toLowerCase()];
}

/** Splits a request target into path and `?query` (kept as is, with its `?`; '' when none). */
export function splitTarget(target: string): { path: string; query: string } {
  const q = target.indexOf('?');
  return q < 0 ? { path: target, query: '' } : { path: target.slice(0, q), query: target.slice(q) };
}

/**
 * A path after a ReplaceFullPath or ReplacePrefixMatch modifier. `matchedPrefix` is the
 * rule's PathPrefix without its trailing `/` (`''` for `/`); ReplacePrefixMatch without one
 * (the rule matched otherwise) leaves the path alone, as validation only allows it with a
 * PathPrefix match. The result keeps exactly one `/` where prefix and rest meet.
 */
export function modifyPath(path: string, m: HTTPPathModifier, matchedPrefix: string | undefined): string {
  if (m.type === 'ReplaceFullPath') return m.replaceFullPath ?? path;
  if (matchedPrefix === undefined) return path;
  const rest = path.slice(matchedPrefix.length);
  const replacement = (m.replacePrefixMatch ?? '').replace(/\/+$/, '');
  const joined = rest === '' ? replacement : replacement + (rest.startsWith('/') ? rest : `/${rest}`);
  return joined === '' ? '/' : joined;
}

/** What a request looked like, for building a redirect. */
export interface RedirectInput {
  scheme: 'http' | 'https';
  /** Host without port. */
  host: string;
  /** Port the client addressed, when its Host header carried one. */
  port: number | undefined;
  path: string;
  query: string;
}

/**
 * The `Location` of a RequestRedirect. The port follows the Gateway API rules: an explicit
 * `port` wins; else, when the scheme changes, the scheme's well-known port (left out);
 * else the request's port. A well-known port for the scheme (80 http, 443 https) is left out.
 */
export function redirectLocation(r: RedirectInput, f: HTTPRequestRedirectFilter, matchedPrefix: string | undefined): string {
  const scheme = f.scheme ?? r.scheme;
  const host = f.hostname ?? r.host;
  const port = f.port ?? (f.scheme !== undefined && f.scheme !== r.scheme ? undefined : r.port);
  const wellKnown = (scheme === 'http' && port === 80) || (scheme === 'https' && port === 443);
  const path = f.path === undefined ? r.path : modifyPath(r.path, f.path, matchedPrefix);
  return `${scheme}://${host}${port === undefined || wellKnown ? '' : `:${port}`}${path}${r.query}`;
}

/** Whether this request is mirrored: `random` in [0, 1); percent or fraction, neither = all. */
export function mirrorSelected(f: HTTPRequestMirrorFilter, random: number): boolean {
  if (f.percent !== undefined) return random * 100 < f.percent;
  if (f.fraction !== undefined) return random * f.fraction.denominator < f.fraction.numerator;
  return true;
}

/** Host and optional port of a Host / :authority value (`[v6]:port` aware). */
export function splitHost(authority: string): { host: string; port: number | undefined } {
  if (authority.startsWith('[')) {
    const end = authority.indexOf(']');
    const port = authority.slice(end + 1).startsWith(':') ? Number(authority.slice(end + 2)) : undefined;
    return { host: authority.slice(0, end + 1), port: Number.isInteger(port) ? port : undefined };
  }
  const c = authority.lastIndexOf(':');
  if (c < 0) return { host: authority, port: undefined };
  const port = Number(authority.slice(c + 1));
  return { host: authority.slice(0, c), port: Number.isInteger(port) && port > 0 ? port : undefined };
}
