// Reads SO_ORIGINAL_DST for real: a throwaway network namespace with an iptables REDIRECT
// rule (IPv4 and IPv6), never the root namespace. Needs root; skipped otherwise.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = process.getuid?.() === 0;
const ns = `rod-${process.pid % 100000}`;
const nodeBin = process.execPath;
const modUrl = new URL('../../node-agent/orig-dst.ts', import.meta.url).href;

function sh(args: string[]): void {
  execFileSync(args[0]!, args.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
}
function inNs(args: string[]): void {
  sh(['ip', 'netns', 'exec', ns, ...args]);
}

const child = `
import net from 'node:net';
import { originalDestination, checkOrigDstSupport } from ${JSON.stringify(modUrl)};
checkOrigDstSupport();
const out = [];
const server = net.createServer((s) => { out.push(originalDestination(s) ?? null); s.end(); });
server.listen(15001, '::', async () => {
  for (const [host, port] of [['10.99.0.1', 80], ['fd00:99::1', 8443], ['127.0.0.1', 15001]]) {
    await new Promise((res, rej) => {
      const c = net.connect(port, host);
      c.on('error', rej); c.on('close', res); c.resume();
    });
  }
  server.close();
  process.stdout.write(JSON.stringify(out));
});
`;

t.test('original destination through iptables REDIRECT in a netns', { skip: !root && 'needs root' }, (t) => {
  spawnSync('ip', ['netns', 'del', ns]);
  t.teardown(() => { spawnSync('ip', ['netns', 'del', ns]); });
  sh(['ip', 'netns', 'add', ns]);
  inNs(['ip', 'link', 'set', 'lo', 'up']);
  inNs(['ip', 'addr', 'add', '10.99.0.1/32', 'dev', 'lo']);
  inNs(['ip', '-6', 'addr', 'add', 'fd00:99::1/128', 'dev', 'lo', 'nodad']);
  inNs(['iptables', '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '-d', '10.99.0.1', '--dport', '80', '-j', 'REDIRECT', '--to-ports', '15001']);
  inNs(['ip6tables', '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '-d', 'fd00:99::1', '--dport', '8443', '-j', 'REDIRECT', '--to-ports', '15001']);
  const r = spawnSync('ip', ['netns', 'exec', ns, nodeBin, '--input-type=module', '-e', child], {
    encoding: 'utf8', timeout: 20000, cwd: fileURLToPath(new URL('../..', import.meta.url)),
  });
  t.equal(r.status, 0, r.stderr);
  const got = JSON.parse(r.stdout || '[]') as unknown[];
  t.same(got, [
    { ip: '10.99.0.1', port: 80, family: 4 },
    { ip: 'fd00:99::1', port: 8443, family: 6 },
    // Tracked but not NATed: conntrack's original tuple is the listener itself.
    { ip: '127.0.0.1', port: 15001, family: 4 },
  ]);
  t.end();
});
