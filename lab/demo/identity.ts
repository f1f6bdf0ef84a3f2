/** Who this demo process is, as the lab (or a Kubernetes downward API) tells it through env. */
import { hostname } from 'node:os';

/** The pod metadata the echo server reports back to every caller. */
export interface PodIdentity {
  readonly pod: string;
  readonly namespace: string;
  readonly app: string;
  readonly version: string;
  readonly node: string;
}

/** Reads POD_NAME, POD_NAMESPACE, APP, APP_VERSION, NODE_NAME; defaults keep it usable outside the lab. */
export function identityFromEnv(env: NodeJS.ProcessEnv = process.env, host: string = hostname()): PodIdentity {
  const pick = (key: string, fallback: string): string => {
    const v = env[key];
    return v !== undefined && v !== '' ? v : fallback;
  };
  return Object.freeze({
    pod: pick('POD_NAME', host),
    namespace: pick('POD_NAMESPACE', 'default'),
    app: pick('APP', 'unknown'),
    version: pick('APP_VERSION', 'unknown'),
    node: pick('NODE_NAME', 'unknown'),
  });
}
