/**
 * The echo server's failure and latency switches, decided as pure functions so that tests
 * can drive them with an injected random source and no sockets.
 */
import { InvalidInputError } from '../../common/errors.ts';

/** Runtime-switchable behaviour of the echo server. */
export interface DemoBehaviour {
  /** Fraction of requests (0..1) answered with `failStatus`. */
  readonly failRate: number;
  /** HTTP status of injected failures (mapped to a grpc-status for gRPC). */
  readonly failStatus: number;
  /** Delay added before every answer. */
  readonly latencyMs: number;
}

/** What the server does with one request, decided before any I/O. */
export interface RequestPlan {
  readonly delayMs: number;
  /** Undefined: answer normally. */
  readonly failStatus: number | undefined;
}

/** Defaults: never fail, no latency; a failure, when switched on, is a 503. */
export const DEFAULT_BEHAVIOUR: DemoBehaviour = Object.freeze({ failRate: 0, failStatus: 503, latencyMs: 0 });

/** Longest delay accepted: long enough for timeout tests, short enough not to pin sockets for ever. */
export const MAX_DELAY_MS = 600_000;

/** Per-request header: fail this request with that status (200 = do not fail it). */
export const FAIL_STATUS_HEADER = 'x-demo-fail-status';
/** Per-request header: delay this answer by that many milliseconds. */
export const DELAY_HEADER = 'x-demo-delay-ms';

/** Checks a fail rate: a number in [0, 1]. */
export function checkFailRate(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 1) {
    throw new InvalidInputError(`${name} must be a number between 0 and 1 (got ${JSON.stringify(v)})`);
  }
  return v;
}

/** Checks an HTTP status usable for an injected failure: an integer in 200..599. */
export function checkStatus(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 200 || v > 599) {
    throw new InvalidInputError(`${name} must be an HTTP status code between 200 and 599 (got ${JSON.stringify(v)})`);
  }
  return v;
}

/** Checks a delay in milliseconds: an integer in 0..MAX_DELAY_MS. */
export function checkDelay(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_DELAY_MS) {
    throw new InvalidInputError(`${name} must be a whole number of milliseconds between 0 and ${MAX_DELAY_MS} (got ${JSON.stringify(v)})`);
  }
  return v;
}

/**
 * Applies a `POST /_demo/config` body to the current behaviour. Unknown keys are rejected
 * (a typo such as `failrate` would otherwise silently do nothing); omitted keys keep their value.
 */
export function applyBehaviourPatch(current: DemoBehaviour, body: unknown): DemoBehaviour {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new InvalidInputError('demo config must be a JSON object such as {"failRate":0.5,"failStatus":503,"latencyMs":20}');
  }
  const known = new Set(['failRate', 'failStatus', 'latencyMs']);
  for (const key of Object.keys(body)) {
    if (!known.has(key)) throw new InvalidInputError(`unknown demo config key "${key}": expected failRate, failStatus or latencyMs`);
  }
  const b = body as Record<string, unknown>;
  return Object.freeze({
    failRate: b['failRate'] === undefined ? current.failRate : checkFailRate(b['failRate'], 'failRate'),
    failStatus: b['failStatus'] === undefined ? current.failStatus : checkStatus(b['failStatus'], 'failStatus'),
    latencyMs: b['latencyMs'] === undefined ? current.latencyMs : checkDelay(b['latencyMs'], 'latencyMs'),
  });
}

function headerNumber(raw: string | string[] | undefined, name: string): number | undefined {
  if (raw === undefined) return undefined;
  const s = Array.isArray(raw) ? raw[0] : raw;
  if (s === undefined || !/^\d{1,9}$/.test(s.trim())) {
    throw new InvalidInputError(`header ${name} must be a whole number (got ${JSON.stringify(raw)})`);
  }
  return Number(s.trim());
}

/**
 * Decides delay and failure for one request: per-request headers win over the switches;
 * `random` is drawn only when a fail rate applies, so a fixed sequence gives fixed outcomes.
 * Throws InvalidInputError (answered with 400) when a header is malformed.
 */
export function planRequest(
  b: DemoBehaviour,
  headers: { readonly [name: string]: string | string[] | undefined },
  random: () => number,
): RequestPlan {
  const hStatus = headerNumber(headers[FAIL_STATUS_HEADER], FAIL_STATUS_HEADER);
  const hDelay = headerNumber(headers[DELAY_HEADER], DELAY_HEADER);
  const delayMs = hDelay === undefined ? b.latencyMs : checkDelay(hDelay, DELAY_HEADER);
  let failStatus: number | undefined;
  if (hStatus !== undefined) {
    // 200 means "do not fail", handy to exempt one request while a fail rate is on.
    failStatus = checkStatus(hStatus, FAIL_STATUS_HEADER) === 200 ? undefined : hStatus;
  } else if (b.failRate > 0 && random() < b.failRate) {
    failStatus = b.failStatus;
  }
  return { delayMs, failStatus };
}

/** Maps an injected HTTP failure to the gRPC status a real server would send for it. */
export function grpcStatusForHttp(status: number): number {
  switch (status) {
    case 400: return 3; // INVALID_ARGUMENT
    case 401: return 16; // UNAUTHENTICATED
    case 403: return 7; // PERMISSION_DENIED
    case 404: return 12; // UNIMPLEMENTED
    case 408: case 504: return 4; // DEADLINE_EXCEEDED
    case 409: return 10; // ABORTED
    case 429: return 8; // RESOURCE_EXHAUSTED
    case 500: return 13; // INTERNAL
    case 501: return 12; // UNIMPLEMENTED
    case 502: case 503: return 14; // UNAVAILABLE: the one retry policies act on
    default: return status >= 200 && status < 300 ? 0 : 2; // UNKNOWN
  }
}
