/** Command-line flags of the waypoint, validated once (unknown flags and bad values name themselves). */
import { parseArgs } from 'node:util';
import { InvalidInputError, errorMessage } from '../common/errors.ts';
import { PORTS } from '../common/ports.ts';

/** Parsed flags. */
export interface WaypointFlags {
  /** Namespace and name of the Gateway (class rondo-waypoint) this waypoint serves. */
  namespace: string;
  name: string;
  controller: string;
  tokenFile: string;
  caFile: string;
  hbonePort: number;
  adminPort: number;
  metricsPort: number;
  drainMs: number;
}

/** Usage text. */
export const USAGE = `node waypoint/main.ts --namespace <ns> --name <gateway> --controller <ip>:${PORTS.controllerPush} --token-file <file> --ca-file <root-cert.pem> ` +
  `[--hbone-port ${PORTS.hbone}] [--admin-port ${PORTS.proxyAdmin}] [--metrics-port ${PORTS.proxyHealth}] [--drain-ms 10000]`;

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

function int(name: string, v: string | undefined, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new InvalidInputError(`--${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}\nusage: ${USAGE}`);
  return n;
}

/** Parses argv (without node and script); throws InvalidInputError naming the flag. */
export function parseWaypointFlags(argv: string[]): WaypointFlags {
  let values: Record<string, string | undefined>;
  try {
    values = parseArgs({
      args: argv, strict: true, allowPositionals: false,
      options: {
        namespace: { type: 'string' }, name: { type: 'string' }, controller: { type: 'string' }, 'token-file': { type: 'string' }, 'ca-file': { type: 'string' },
        'hbone-port': { type: 'string' }, 'admin-port': { type: 'string' }, 'metrics-port': { type: 'string' }, 'drain-ms': { type: 'string' },
      },
    }).values;
  } catch (e) {
    throw new InvalidInputError(`${errorMessage(e)}\nusage: ${USAGE}`);
  }
  for (const f of ['namespace', 'name', 'controller', 'token-file', 'ca-file']) {
    if (values[f] === undefined || values[f] === '') throw new InvalidInputError(`--${f} is required\nusage: ${USAGE}`);
  }
  for (const f of ['namespace', 'name']) {
    if (!DNS_LABEL.test(values[f]!)) throw new InvalidInputError(`--${f} must be a Kubernetes name (lower-case DNS label), got ${JSON.stringify(values[f])}`);
  }
  if (!/^[^:]+:\d+$/.test(values['controller']!)) throw new InvalidInputError(`--controller must be <ip>:<port>, got ${JSON.stringify(values['controller'])}`);
  return {
    namespace: values['namespace']!, name: values['name']!, controller: values['controller']!, tokenFile: values['token-file']!, caFile: values['ca-file']!,
    hbonePort: int('hbone-port', values['hbone-port'], PORTS.hbone, 0, 65535),
    adminPort: int('admin-port', values['admin-port'], PORTS.proxyAdmin, 0, 65535),
    metricsPort: int('metrics-port', values['metrics-port'], PORTS.proxyHealth, 0, 65535),
    drainMs: int('drain-ms', values['drain-ms'], 10_000, 0, 3_600_000),
  };
}
