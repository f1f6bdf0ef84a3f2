/** Command-line flags of the node agent, validated once (unknown flags and bad values name themselves). */
import { parseArgs } from 'node:util';
import { availableParallelism } from 'node:os';
import { isIP } from 'node:net';
import { InvalidInputError, errorMessage } from '../common/errors.ts';
import { PORTS } from '../common/ports.ts';

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
  /** seconds of quiet after which the agent hands garbage back (0: never); see reclaim.ts */
  idleReclaimS: number;
  /** remove the capture rules on a clean shutdown (default off: a restarting agent leaves them, so pods fail closed) */
  cleanupOnExit: boolean;
}

/** What main.ts is asked to do: run the agent, or only remove this node's capture rules and exit. */
export type AgentCommand = { kind: 'run'; flags: AgentFlags } | { kind: 'uninstall' };

/** Usage text. */
export const USAGE = `node node-agent/main.ts --node <name> --controller <ip>:${PORTS.controllerPush} --token-file <file> --ca-file <root-cert.pem> ` +
  `[--workers N (default: 0 = in-process on ≤ 2 CPUs, else min(CPUs, 4))] [--admin-port ${PORTS.proxyAdmin}] [--metrics-port ${PORTS.proxyHealth}] [--drain-ms 10000] [--idle-reclaim-s 30 (0 = off)] ` +
  '[--cleanup-on-exit (remove the capture rules on SIGTERM; off: pods fail closed while the agent restarts)]\n' +
  '   or: node node-agent/main.ts --uninstall   (remove this node\'s capture rules and exit; stop the agent first)';

function int(name: string, v: string | undefined, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  if (!/^[0-9]+$/.test(v) || Number(v) < min || Number(v) > max) throw new InvalidInputError(`--${name} must be an integer in ${min}..${max}, got ${JSON.stringify(v)}`);
  return Number(v);
}

/**
 * Default data-path worker count. On a 2-core node the apps, the kernel's network stack and
 * the agent share two cores: extra Node processes only add wake-ups between processes and
 * ~60 MB each (measured in docs/performance.md: in-process served 1.4× the requests/s of
 * 2 workers at 0.6× the CPU per request and 0.4× the memory). With more cores, workers let
 * the data path use them.
 */
export function defaultWorkers(cpus: number): number {
  return cpus <= 2 ? 0 : Math.min(cpus, 4);
}

/** Parses argv (without node and script); throws InvalidInputError naming the flag. */
export function parseAgentFlags(argv: string[]): AgentFlags {
  let values: Record<string, string | undefined>;
  let cleanupOnExit = false;
  try {
    const { 'cleanup-on-exit': cleanup, ...strings } = parseArgs({
      args: argv, strict: true, allowPositionals: false,
      options: {
        node: { type: 'string' }, controller: { type: 'string' }, 'token-file': { type: 'string' }, 'ca-file': { type: 'string' },
        workers: { type: 'string' }, 'admin-port': { type: 'string' }, 'metrics-port': { type: 'string' }, 'drain-ms': { type: 'string' },
        'idle-reclaim-s': { type: 'string' }, 'cleanup-on-exit': { type: 'boolean' },
      },
    }).values;
    values = strings;
    cleanupOnExit = cleanup === true;
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
    throw new InvalidInputError(`--controller must be <ip>:<port> (e.g. 10.250.0.2:${PORTS.controllerPush}), got ${JSON.stringify(controller)}`);
  }
  return {
    node: need('node'),
    controller,
    tokenFile: need('token-file'),
    caFile: need('ca-file'),
    workers: int('workers', values['workers'], defaultWorkers(availableParallelism()), 0, 256),
    adminPort: int('admin-port', values['admin-port'], PORTS.proxyAdmin, 1, 65535),
    metricsPort: int('metrics-port', values['metrics-port'], PORTS.proxyHealth, 1, 65535),
    drainMs: int('drain-ms', values['drain-ms'], 10_000, 0, 3_600_000),
    idleReclaimS: int('idle-reclaim-s', values['idle-reclaim-s'], 30, 0, 86_400),
    cleanupOnExit,
  };
}

/**
 * Parses main.ts's command line: `--uninstall` alone, or the agent's flags. Uninstall takes
 * no other flag: it needs no controller, token or CA, and a stray flag is more likely a
 * mistake (meaning to start the agent) than something to ignore.
 */
export function parseAgentCommand(argv: string[]): AgentCommand {
  if (!argv.includes('--uninstall')) return { kind: 'run', flags: parseAgentFlags(argv) };
  const others = argv.filter((a) => a !== '--uninstall');
  if (others.length > 0) {
    throw new InvalidInputError(`--uninstall takes no other flag (it only removes this node's capture rules), got ${others.join(' ')}\nusage: ${USAGE}`);
  }
  return { kind: 'uninstall' };
}
