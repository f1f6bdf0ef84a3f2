/** Command-line flags of the controller process, validated once with clear errors. */
import { parseArgs } from 'node:util';
import { isIP } from 'node:net';
import { InvalidInputError } from '../common/errors.ts';
import { PORTS } from '../common/ports.ts';

/** Validated controller flags. */
export interface ControllerFlags {
  /** State directory (lab), or undefined with --kubeconfig. */
  files: string | undefined;
  /** Kubeconfig file, `in-cluster`/`default` for the standard lookup, or undefined with --files. */
  kubeconfig: string | undefined;
  listen: string;
  caDir: string;
  tokens: string;
  trustDomain: string;
  certTtlSeconds: number;
  debounceMs: number;
  pushPort: number;
  metricsPort: number;
  /** File holding the bearer token that opens /debug/* to other hosts; undefined: only local requests. */
  debugTokenFile: string | undefined;
  /** TEST ONLY: a file whose content is pushed, unchecked, as an extra trust bundle entry. */
  debugUncheckedTrustBundleFile: string | undefined;
}

/** Usage text printed with flag errors. */
export const USAGE = `usage: node controller/main.ts (--files <stateDir> | --kubeconfig <file|default>) --listen <ip> --ca-dir <dir> --tokens <tokens.json> [--trust-domain cluster.local] [--cert-ttl <seconds>] [--debounce-ms 50] [--push-port ${PORTS.controllerPush}] [--metrics-port ${PORTS.controllerHttp}] [--debug-token-file <file>] [--debug-unchecked-trust-bundle-file <file> (tests only)]`;

function int(name: string, v: string | undefined, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  if (!/^\d+$/.test(v)) throw new InvalidInputError(`--${name} must be a whole number, got "${v}"`);
  const n = Number(v);
  if (n < min || n > max) throw new InvalidInputError(`--${name} must be between ${min} and ${max}, got ${n}`);
  return n;
}

/** Parses argv (without node and script); throws InvalidInputError naming the flag. */
export function parseControllerFlags(argv: string[]): ControllerFlags {
  let values: Record<string, string | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        files: { type: 'string' }, kubeconfig: { type: 'string' }, listen: { type: 'string' }, 'ca-dir': { type: 'string' }, tokens: { type: 'string' },
        'trust-domain': { type: 'string' }, 'cert-ttl': { type: 'string' }, 'debounce-ms': { type: 'string' },
        'push-port': { type: 'string' }, 'metrics-port': { type: 'string' }, 'debug-token-file': { type: 'string' }, 'debug-unchecked-trust-bundle-file': { type: 'string' },
      },
    }) as { values: Record<string, string | undefined> });
  } catch (e) {
    throw new InvalidInputError(`${(e as Error).message}\n${USAGE}`);
  }
  const need = (k: string): string => {
    const v = values[k];
    if (v === undefined || v === '') throw new InvalidInputError(`--${k} is required\n${USAGE}`);
    return v;
  };
  const files = values['files'];
  const kubeconfig = values['kubeconfig'];
  if ((files === undefined || files === '') === (kubeconfig === undefined || kubeconfig === '')) {
    throw new InvalidInputError(`exactly one of --files (a state directory) or --kubeconfig (a Kubernetes API) is required\n${USAGE}`);
  }
  const listen = need('listen');
  if (isIP(listen) === 0) throw new InvalidInputError(`--listen must be an IP address (it goes into the serving certificate's IP SAN), got "${listen}"`);
  const trustDomain = values['trust-domain'] ?? 'cluster.local';
  if (!/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/.test(trustDomain)) throw new InvalidInputError(`--trust-domain must be a lower-case DNS-like name, got "${trustDomain}"`);
  return {
    files: files === '' ? undefined : files,
    kubeconfig: kubeconfig === '' ? undefined : kubeconfig,
    listen,
    caDir: need('ca-dir'),
    tokens: need('tokens'),
    trustDomain,
    certTtlSeconds: int('cert-ttl', values['cert-ttl'], 24 * 3600, 10, 365 * 24 * 3600),
    debounceMs: int('debounce-ms', values['debounce-ms'], 50, 0, 60_000),
    pushPort: int('push-port', values['push-port'], PORTS.controllerPush, 0, 65535),
    metricsPort: int('metrics-port', values['metrics-port'], PORTS.controllerHttp, 0, 65535),
    debugTokenFile: values['debug-token-file'] === '' ? undefined : values['debug-token-file'],
    debugUncheckedTrustBundleFile: values['debug-unchecked-trust-bundle-file'] === '' ? undefined : values['debug-unchecked-trust-bundle-file'],
  };
}
