/** Command-line flags of the node agent, validated once (unknown flags and bad values name themselves). */
import { parseArgs } from 'node:util';
import { availableParallelism } from 'node:os';
import { isIP } from 'node:net';
import { InvalidInputError, errorMessage } from '../common/errors.ts';

/** Parsed flags. */
export interface AgentFlags {
  node: string;
  controller: string;
  tokenFile: string;
  caFile: string;
  workers: number;
  adminPort: number;
  metricsPort: number;
  drainMs: number;
}

/** Usage text. */
export const USAGE = 'node node-agent/main.ts --node <name> --controller <ip>:15012 --token-file <file> --ca-file <root-cert.pem> ' +
  '[--workers N (default: CPUs; 0 = in-process)] [--admin-port 15000] [--metrics-port 15020] [--drain-ms 10000]';

function int(name: string, v: string | undefined, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  if (!/^[0-9]+$/.test(v) || Number(v) < min || Number(v) > max) throw new InvalidInputError(`--${name} must be an integer in ${min}..${max}, got ${JSON.stringify(v)}`);
  return Number(v);
}

/** Parses argv (without node and script); throws InvalidInputError naming the flag. */
export function parseAgentFlags(argv: string[]): AgentFlags {
  let values: Record<string, string | undefined>;
  try {
    values = parseArgs({
      args: argv, strict: true, allowPositionals: false,
      options: {
        node: { type: 'string' }, controller: { type: 'string' }, 'token-file': { type: 'string' }, 'ca-file': { type: 'string' },
        workers: { type: 'string' }, 'admin-port': { type: 'string' }, 'metrics-port': { type: 'string' }, 'drain-ms': { type: 'string' },
      },
    }).values;
  } catch (e) {
    throw new InvalidInputError(`${errorMessage(e)}\nusage: ${USAGE}`);
  }
  const need = (k: string): string => {
    const v = values[k];
    if (v === undefined || v === '') throw new InvalidInputError(`--${k} is required\nusage: ${USAGE}`);
    return v;
  };
  const controller = need('controller');
  const m = /^(.+):([0-9]{1,5})$/.exec(controller);
  const host = m?.[1]?.replace(/^\[(.*)\]$/, '$1') ?? '';
  if (m === null || isIP(host) === 0 || Number(m[2]) < 1 || Number(m[2]) > 65535) {
    throw new InvalidInputError(`--controller must be <ip>:<port> (e.g. 10.250.0.2:15012), got ${JSON.stringify(controller)}`);
  }
  return {
    node: need('node'),
    controller,
    tokenFile: need('token-file'),
    caFile: need('ca-file'),
    workers: int('workers', values['workers'], availableParallelism(), 0, 256),
    adminPort: int('admin-port', values['admin-port'], 15000, 1, 65535),
    metricsPort: int('metrics-port', values['metrics-port'], 15020, 1, 65535),
    drainMs: int('drain-ms', values['drain-ms'], 10_000, 0, 3_600_000),
  };
}
