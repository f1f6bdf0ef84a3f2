/**
 * The baseline an operator would build by hand: an HAProxy mTLS tunnel between two nodes
 * (TCP mode, TLS 1.3, ECDSA P-256, client certificates verified on both ends).
 */
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TunnelPlan {
  /** where clients connect on the first node */
  clientSide: { listen: string; port: number };
  /** TLS listener on the second node */
  serverSide: { listen: string; port: number };
  /** the application behind the tunnel */
  target: { ip: string; port: number };
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Creates a throwaway CA and one ECDSA P-256 certificate per tunnel end in dir. */
export function makeTunnelCerts(dir: string): { ca: string; client: string; server: string } {
  mkdirSync(dir, { recursive: true });
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key'], dir);
  openssl(['req', '-x509', '-new', '-key', 'ca.key', '-subj', '/CN=bench-ca', '-days', '2', '-out', 'ca.pem'], dir);
  for (const who of ['client', 'server']) {
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${who}.key`], dir);
    openssl(['req', '-new', '-key', `${who}.key`, '-subj', `/CN=${who}`, '-out', `${who}.csr`], dir);
    openssl(['x509', '-req', '-in', `${who}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-out', `${who}.crt`], dir);
    execFileSync('sh', ['-c', `cat ${who}.crt ${who}.key > ${who}.pem`], { cwd: dir });
  }
  return { ca: join(dir, 'ca.pem'), client: join(dir, 'client.pem'), server: join(dir, 'server.pem') };
}

const COMMON = (threads: number): string => `global
  nbthread ${threads}
  maxconn 8000
  ssl-default-bind-options ssl-min-ver TLSv1.3
  ssl-default-server-options ssl-min-ver TLSv1.3
  tune.ssl.default-dh-param 2048
defaults
  mode tcp
  timeout connect 5s
  timeout client 5m
  timeout server 5m
`;

function isPlanList(p: TunnelPlan | readonly TunnelPlan[]): p is readonly TunnelPlan[] {
  return Array.isArray(p);
}

/** HAProxy configs for both ends (one frontend/backend pair per tunnel); write them and start `haproxy -f` in each node's netns. */
export function tunnelConfigs(plans: TunnelPlan | readonly TunnelPlan[], certs: { ca: string; client: string; server: string }, threads = 2): { client: string; server: string } {
  const list: readonly TunnelPlan[] = isPlanList(plans) ? plans : [plans];
  const client = [COMMON(threads), ...list.map((plan, i) => `
frontend plain_in_${i}
  bind ${plan.clientSide.listen}:${plan.clientSide.port}
  default_backend tunnel_${i}
backend tunnel_${i}
  server peer ${plan.serverSide.listen}:${plan.serverSide.port} ssl crt ${certs.client} ca-file ${certs.ca} verify required
`)].join('');
  const server = [COMMON(threads), ...list.map((plan, i) => `
frontend tls_in_${i}
  bind ${plan.serverSide.listen}:${plan.serverSide.port} ssl crt ${certs.server} ca-file ${certs.ca} verify required
  default_backend app_${i}
backend app_${i}
  server app ${plan.target.ip}:${plan.target.port}
`)].join('');
  return { client, server };
}

/** Writes both configs into dir and returns their paths. */
export function writeTunnelConfigs(dir: string, plan: TunnelPlan | readonly TunnelPlan[], threads = 2): { client: string; server: string } {
  const certs = makeTunnelCerts(join(dir, 'certs'));
  const cfg = tunnelConfigs(plan, certs, threads);
  const paths = { client: join(dir, 'haproxy-client.cfg'), server: join(dir, 'haproxy-server.cfg') };
  writeFileSync(paths.client, cfg.client);
  writeFileSync(paths.server, cfg.server);
  for (const p of Object.values(paths)) execFileSync('haproxy', ['-c', '-q', '-f', p]);
  return paths;
}

/** A running HAProxy in some netns (started by the bench, killed by stop()). */
export interface RunningHaproxy { pid: number; stop(): Promise<void> }

/** Starts `haproxy -db -f cfg` in netns `ns` in its own process group; output goes to `log`. */
export function startHaproxy(ns: string, cfg: string, log: string): RunningHaproxy {
  const fd = openSync(log, 'a');
  try {
    const child = spawn('ip', ['netns', 'exec', ns, 'haproxy', '-db', '-f', cfg], { detached: true, stdio: ['ignore', fd, fd] });
    child.on('error', () => undefined); // surfaces as a failed probe, with the log named
    const pid = child.pid;
    if (pid === undefined) throw new Error(`could not start haproxy in ${ns}: see ${log}`);
    let stopped: Promise<void> | undefined;
    return {
      pid,
      stop: () => {
        stopped ??= new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) { resolve(); return; }
          const t = setTimeout(() => { try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ } }, 2000);
          child.once('exit', () => { clearTimeout(t); resolve(); });
          try { process.kill(-pid, 'SIGTERM'); } catch { clearTimeout(t); resolve(); }
        });
        return stopped;
      },
    };
  } finally {
    closeSync(fd);
  }
}
