/** Command-line parsing for `rondo-demo`: every bad flag or value gets an error naming it. */
import { parseArgs } from 'node:util';
import type { ParseArgsOptionsConfig } from 'node:util';
import { InvalidInputError, errorMessage } from '../../common/errors.ts';
import { checkDelay, checkFailRate, checkStatus } from './behaviour.ts';
import { MAX_BODY_BYTES } from './bytes-cache.ts';

/** A parsed, validated subcommand. */
export type DemoCommand =
  | { cmd: 'echo'; port: number; host: string; failRate: number; failStatus: number; latencyMs: number; bodyBytes?: number }
  | { cmd: 'tcp-echo'; port: number; host: string }
  | { cmd: 'client'; url: string; requests: number; concurrency: number; mode: 'http1' | 'h2c' | 'grpc'; headers: Record<string, string>; timeoutMs: number }
  | { cmd: 'tcp-client'; host: string; port: number; message: string; timeoutMs: number };

/** Usage text printed on bad input. */
export const USAGE = `usage:
  rondo-demo echo [--port 8080] [--host 0.0.0.0] [--fail-rate 0..1] [--fail-status 503] [--latency-ms 0] [--body-bytes N]
  rondo-demo tcp-echo [--port 9000] [--host 0.0.0.0]
  rondo-demo client <url> [-n 100] [-c 4] [--h2c | --grpc] [--header k:v]... [--timeout-ms 5000]
  rondo-demo tcp-client <host> <port> <message> [--timeout-ms 5000]`;

function int(raw: string | undefined, name: string, dflt: number, min: number, max: number): number {
  if (raw === undefined) return dflt;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new InvalidInputError(`${name} must be a whole number between ${min} and ${max} (got "${raw}")`);
  }
  return Number(raw);
}

function num(raw: string | undefined, name: string): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n)) throw new InvalidInputError(`${name} must be a number (got "${raw}")`);
  return n;
}

function parse(argv: string[], options: ParseArgsOptionsConfig): { values: Record<string, string | boolean | (string | boolean)[] | undefined>; positionals: string[] } {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new InvalidInputError(errorMessage(e));
  }
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** Parses `argv` (without node and script) into a command; throws InvalidInputError naming the problem. */
export function parseDemoArgs(argv: string[]): DemoCommand {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'echo': {
      const { values: v, positionals } = parse(rest, {
        port: { type: 'string' }, host: { type: 'string' }, 'fail-rate': { type: 'string' },
        'fail-status': { type: 'string' }, 'latency-ms': { type: 'string' }, 'body-bytes': { type: 'string' },
      });
      if (positionals.length > 0) throw new InvalidInputError(`echo takes no positional arguments (got "${positionals.join(' ')}")`);
      const bodyBytes = str(v['body-bytes']);
      return {
        cmd, port: int(str(v['port']), '--port', 8080, 0, 65535), host: str(v['host']) ?? '0.0.0.0',
        failRate: checkFailRate(num(str(v['fail-rate']), '--fail-rate') ?? 0, '--fail-rate'),
        failStatus: checkStatus(num(str(v['fail-status']), '--fail-status') ?? 503, '--fail-status'),
        latencyMs: checkDelay(num(str(v['latency-ms']), '--latency-ms') ?? 0, '--latency-ms'),
        ...(bodyBytes !== undefined ? { bodyBytes: int(bodyBytes, '--body-bytes', 0, 0, MAX_BODY_BYTES) } : {}),
      };
    }
    case 'tcp-echo': {
      const { values: v, positionals } = parse(rest, { port: { type: 'string' }, host: { type: 'string' } });
      if (positionals.length > 0) throw new InvalidInputError(`tcp-echo takes no positional arguments (got "${positionals.join(' ')}")`);
      return { cmd, port: int(str(v['port']), '--port', 9000, 0, 65535), host: str(v['host']) ?? '0.0.0.0' };
    }
    case 'client': {
      const { values: v, positionals } = parse(rest, {
        n: { type: 'string', short: 'n' }, c: { type: 'string', short: 'c' }, h2c: { type: 'boolean' },
        grpc: { type: 'boolean' }, header: { type: 'string', multiple: true }, 'timeout-ms': { type: 'string' },
      });
      if (positionals.length !== 1) throw new InvalidInputError(`client needs exactly one URL (got ${positionals.length} arguments)`);
      const url = positionals[0]!;
      let parsed: URL;
      try { parsed = new URL(url); } catch { throw new InvalidInputError(`"${url}" is not a URL: write it as http://host:port/path`); }
      if (parsed.protocol !== 'http:') throw new InvalidInputError(`client speaks cleartext only: use an http:// URL (got ${parsed.protocol})`);
      if (v['h2c'] === true && v['grpc'] === true) throw new InvalidInputError('--h2c and --grpc exclude each other (gRPC already uses HTTP/2)');
      const headers: Record<string, string> = {};
      for (const h of (v['header'] as string[] | undefined) ?? []) {
        const i = h.indexOf(':');
        const k = h.slice(0, i).trim().toLowerCase();
        if (i <= 0 || !/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(k)) throw new InvalidInputError(`--header must look like name:value (got "${h}")`);
        headers[k] = h.slice(i + 1).trim();
      }
      return {
        cmd, url, headers,
        requests: int(str(v['n']), '-n', 100, 1, 10_000_000),
        concurrency: int(str(v['c']), '-c', 4, 1, 10_000),
        mode: v['grpc'] === true ? 'grpc' : v['h2c'] === true ? 'h2c' : 'http1',
        timeoutMs: int(str(v['timeout-ms']), '--timeout-ms', 5000, 1, 3_600_000),
      };
    }
    case 'tcp-client': {
      const { values: v, positionals } = parse(rest, { 'timeout-ms': { type: 'string' } });
      if (positionals.length !== 3) throw new InvalidInputError(`tcp-client needs <host> <port> <message> (got ${positionals.length} arguments)`);
      return {
        cmd, host: positionals[0]!, port: int(positionals[1], 'port', 0, 1, 65535), message: positionals[2]!,
        timeoutMs: int(str(v['timeout-ms']), '--timeout-ms', 5000, 1, 3_600_000),
      };
    }
    default:
      throw new InvalidInputError(cmd === undefined ? 'missing subcommand' : `unknown subcommand "${cmd}": expected echo, tcp-echo, client or tcp-client`);
  }
}
