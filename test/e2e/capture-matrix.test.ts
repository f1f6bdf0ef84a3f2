// Every path a client can take to an enrolled pod, in a real lab (2 nodes, iptables, the
// lab's service NAT playing kube-proxy): pod IP and Service VIP, same node and other node,
// STRICT and PERMISSIVE, mesh and non-mesh source. A mesh client always gets through (mTLS);
// a non-mesh client gets through under PERMISSIVE, through the destination agent's 15006
// (counted there as plaintext), and is refused under STRICT. Each Service has one endpoint
// on each node, so a VIP cell's calls land on both at random: 16 calls leave a same-node
// endpoint unchosen with probability 2^-16.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deploymentDoc, labDoc, labSpec, namespaceDoc, tcpEcho } from '../helpers/lab-specs.ts';
import { labSkipReason, withLab } from '../helpers/lab.ts';
import { sample, scrapeAgent, scratchDir, waitUntil } from '../helpers/mesh.ts';

const skip = labSkipReason();
const MODES = ['STRICT', 'PERMISSIVE'] as const;
const NODES = ['node-1', 'node-2'] as const;
const VIP_CALLS = 16;
const ns = (mode: string): string => mode.toLowerCase();
const short = (node: string): string => node.replace('node-', 'n');

const docs: string[] = [labDoc(), namespaceDoc('meshc', { ambient: true }), namespaceDoc('plainc')];
for (const mode of MODES) {
  docs.push(namespaceDoc(ns(mode), { ambient: true }), `apiVersion: security.rondo.dev/v1alpha1
kind: PeerAuthentication
metadata: { name: mode, namespace: ${ns(mode)} }
spec: { mtls: { mode: ${mode} } }
`, `apiVersion: v1
kind: Service
metadata: { name: srv, namespace: ${ns(mode)} }
spec:
  selector: { role: srv }
  ports: [{ port: 80, targetPort: 9000 }]
`);
  for (const node of NODES) docs.push(deploymentDoc({ namespace: ns(mode), name: `srv-${short(node)}`, node, labels: { role: 'srv' }, command: tcpEcho(9000) }));
}
for (const node of NODES) {
  for (const cns of ['meshc', 'plainc']) docs.push(deploymentDoc({ namespace: cns, name: `c-${short(node)}`, node, command: tcpEcho(9001) }));
}
const spec = labSpec(...docs);

// Runs in a client pod: <n> sequential connections to host:port, each sending a unique
// message and expecting it echoed; prints {ok, failed: [reasons]}.
const CALLS = `
import net from 'node:net';
const [host, port, n, tag] = process.argv.slice(2);
const one = (i) => new Promise((resolve) => {
  const msg = tag + '-' + i;
  const s = net.connect({ host, port: Number(port) });
  let got = '';
  const timer = setTimeout(() => { s.destroy(); resolve('timeout'); }, 4000);
  s.on('connect', () => s.end(msg));
  s.on('data', (d) => { got += d; });
  s.on('error', (e) => { clearTimeout(timer); resolve(e.code ?? e.message); });
  s.on('close', () => { clearTimeout(timer); resolve(got === msg ? 'ok' : 'got ' + JSON.stringify(got)); });
});
const out = { ok: 0, failed: [] };
for (let i = 0; i < Number(n); i++) { const r = await one(i); if (r === 'ok') out.ok++; else out.failed.push(r); }
process.stdout.write(JSON.stringify(out));
`;

interface Cell { client: string; mesh: boolean; node: string; mode: string; target: string; host: string; port: number; calls: number }

t.test('capture matrix: pod IP and VIP, same and other node, STRICT and PERMISSIVE, mesh and non-mesh clients', { skip: skip ?? false, timeout: 300_000 }, async (t) => {
  const lab = await withLab(t, spec);
  const dir = scratchDir(t);
  const script = join(dir, 'calls.mjs');
  writeFileSync(script, CALLS);
  const run = async (client: string, host: string, port: number, n: number, tag: string): Promise<{ ok: number; failed: string[] }> => {
    const r = await lab.exec(client, [process.execPath, script, host, String(port), String(n), tag], { allowFail: true, timeoutMs: 10_000 + n * 5000 });
    try { return JSON.parse(r.stdout) as { ok: number; failed: string[] }; } catch { return { ok: 0, failed: [`no result: ${r.stderr.trim()}`] }; }
  };
  for (const mode of MODES) for (const node of NODES) await lab.waitForPort(`${ns(mode)}/srv-${short(node)}`, 9000, 20_000);
  // The first mesh connection to each server pays for certificates: bounded warm-up.
  for (const mode of MODES) {
    for (const node of NODES) {
      await waitUntil(`mesh warm-up to ${mode} srv on ${node}`, async () => (await run('meshc/c-n1', lab.podIp(`${ns(mode)}/srv-${short(node)}`), 9000, 1, 'warm')).ok === 1, 20_000, 250);
    }
  }

  const cells: Cell[] = [];
  for (const mode of MODES) {
    for (const mesh of [true, false]) {
      for (const node of NODES) {
        const client = `${mesh ? 'meshc' : 'plainc'}/c-${short(node)}`;
        const base = { client, mesh, node, mode };
        for (const srvNode of NODES) {
          cells.push({ ...base, target: `pod IP, ${srvNode === node ? 'same' : 'other'} node`, host: lab.podIp(`${ns(mode)}/srv-${short(srvNode)}`), port: 9000, calls: 2 });
        }
        cells.push({ ...base, target: 'Service VIP (endpoints on both nodes)', host: lab.serviceIp(`${ns(mode)}/srv`), port: 80, calls: VIP_CALLS });
      }
    }
  }

  const scrapeAll = async (): Promise<string[]> => Promise.all(NODES.map((n) => scrapeAgent(lab, n)));
  const plaintextIn = (texts: string[], mode: string): number => texts.reduce((sum, m) => sum + sample(m, 'istio_tcp_connections_opened_total',
    'reporter="destination"', `destination_workload_namespace="${ns(mode)}"`, 'connection_security_policy="none"'), 0);
  const plainRefused = (texts: string[]): number => texts.reduce((sum, m) => sum + sample(m, 'rondo_agent_refused_connections_total', 'reason="plaintext_not_allowed"'), 0);
  const before = await scrapeAll();

  const results: string[] = [];
  for (const c of cells) {
    const r = await run(c.client, c.host, c.port, c.calls, `${ns(c.mode)}-${c.client.replace('/', '-')}`);
    const expectOk = c.mesh || c.mode === 'PERMISSIVE';
    const name = `${c.mode.padEnd(10)} ${c.mesh ? 'mesh    ' : 'non-mesh'} client on ${c.node} -> ${c.target}`;
    results.push(`${name}: ${r.ok}/${c.calls} echoed${r.failed.length > 0 ? ` (${[...new Set(r.failed)].join(', ')})` : ''}`);
    if (expectOk) t.equal(r.ok, c.calls, `${name}: every call echoed (${r.failed.join(', ')})`);
    else t.same({ ok: r.ok, refused: r.failed.every((f) => f === 'ECONNRESET' || f === 'ECONNREFUSED') }, { ok: 0, refused: true }, `${name}: every call refused (${r.failed.join(', ')})`);
  }
  t.comment(`capture matrix:\n${results.join('\n')}`);

  // Non-mesh calls that got through went through a destination agent's 15006 (not around it),
  // and under STRICT each one was refused there.
  const after = await scrapeAll();
  const plainCalls = (mode: string): number => cells.filter((c) => !c.mesh && c.mode === mode).reduce((s, c) => s + c.calls, 0);
  t.equal(plaintextIn(after, 'PERMISSIVE') - plaintextIn(before, 'PERMISSIVE'), plainCalls('PERMISSIVE'), 'every PERMISSIVE plaintext call counted by a destination agent as connection_security_policy="none"');
  t.equal(plaintextIn(after, 'STRICT') - plaintextIn(before, 'STRICT'), 0, 'no STRICT plaintext connection opened');
  t.equal(plainRefused(after) - plainRefused(before), plainCalls('STRICT'), 'every STRICT plaintext call refused by a destination agent as plaintext_not_allowed');
});
