/**
 * Installs the Debian packages the lab, the tests and the benchmarks need, if missing.
 * Runs as root on a fresh machine; on one that has everything it only checks.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** command -> Debian package that provides it */
const NEEDED: Record<string, string> = {
  ip: 'iproute2',
  iptables: 'iptables',
  'iptables-restore': 'iptables',
  ipset: 'ipset',
  curl: 'curl',
  tcpdump: 'tcpdump',
  openssl: 'openssl',
  wrk: 'wrk',
  h2load: 'nghttp2-client',
  haproxy: 'haproxy',
  promtool: 'prometheus',
  iperf3: 'iperf3',
  pkill: 'procps',
};

function have(cmd: string): boolean {
  for (const dir of ['/usr/sbin', '/usr/bin', '/sbin', '/bin', '/usr/local/bin', '/usr/local/sbin']) {
    if (existsSync(`${dir}/${cmd}`)) return true;
  }
  return false;
}

/** Returns the packages that were missing (and are now installed). */
export function ensureDeps(): string[] {
  const missing = [...new Set(Object.entries(NEEDED).filter(([cmd]) => !have(cmd)).map(([, pkg]) => pkg))];
  if (missing.length === 0) return [];
  if (process.getuid?.() !== 0) {
    throw new Error(`missing Debian packages ${missing.join(', ')}: run as root so they can be installed with apt-get`);
  }
  process.stderr.write(`installing ${missing.join(' ')} with apt-get\n`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  const r = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { stdio: 'inherit', env });
  if (r.status !== 0) throw new Error(`apt-get install ${missing.join(' ')} failed (exit ${r.status})`);
  return missing;
}

if (import.meta.main) {
  ensureDeps();
}
