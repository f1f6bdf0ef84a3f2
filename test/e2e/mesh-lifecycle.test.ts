// Issue 4 §7 in a real lab with 20-second workload certificates: a connection stays open and
// working across several renewals; an agent restart leaves the kernel rules exactly as they
// were (no duplicates) and new connections work afterwards.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deploymentDoc, labDoc, labSpec, namespaceDoc, tcpEcho } from '../helpers/lab-specs.ts';
import { labSkipReason, withLab } from '../helpers/lab.ts';
import { agentAdmin, sample, scrapeAgent, scratchDir, tcpSend, waitUntil } from '../helpers/mesh.ts';

const skip = labSkipReason();
const HOLD_MS = 45_000;
const spec = labSpec(
  labDoc({ meshOptions: { certTtlSeconds: 20 } }),
  namespaceDoc('demo', { ambient: true }),
  deploymentDoc({ namespace: 'demo', name: 'server', node: 'node-2', command: tcpEcho(9000) }),
  deploymentDoc({ namespace: 'demo', name: 'client', node: 'node-1', command: tcpEcho(9001) }),
);

// Runs in the client pod: one TCP connection through the mesh, a message every 3 s, each
// echo checked, for <holdMs>; prints {sent, echoed, errors}.
const HOLD = `
import net from 'node:net';
const [ip, port, holdMs] = process.argv.slice(2);
const s = net.connect({ host: ip, port: Number(port), noDelay: true });
let buf = '', sent = 0, echoed = 0;
const errors = [];
s.on('data', (d) => { buf += d; for (let i; (i = buf.indexOf('\\n')) >= 0;) { const line = buf.slice(0, i); buf = buf.slice(i + 1); if (line === 'msg-' + echoed) echoed++; else errors.push('unexpected ' + line); } });
s.on('error', (e) => errors.push(e.code ?? e.message));
s.on('close', () => errors.push('closed after ' + sent + ' messages'));
s.on('connect', () => {
  const started = Date.now();
  const tick = () => {
    if (s.destroyed) return finish();
    if (Date.now() - started > Number(holdMs)) return setTimeout(finish, 1000);
    s.write('msg-' + sent++ + '\\n');
    setTimeout(tick, 3000);
  };
  tick();
});
function finish() { process.stdout.write(JSON.stringify({ sent, echoed, errors }), () => process.exit(0)); }
`;

/** The nat and filter tables and ipsets of a node, without counters and timestamps. */
async function kernelState(lab: Awaited<ReturnType<typeof withLab>>, node: string): Promise<string> {
  const ipt = await lab.execNode(node, ['iptables-save']);
  const sets = await lab.execNode(node, ['ipset', 'save']);
  return (ipt.stdout + sets.stdout).split('\n').filter((l) => !l.startsWith('#')).map((l) => l.replace(/\[\d+:\d+\]/, '[]')).join('\n');
}

t.test('mesh lifecycle with 20-second certificates', { skip: skip ?? false, timeout: 240_000 }, async (t) => {
  const lab = await withLab(t, spec);
  const dir = scratchDir(t);
  await lab.waitForPort('demo/server', 9000, 20_000);
  const server = lab.podIp('demo/server');
  await waitUntil('client -> server over the mesh', async () => (await tcpSend(lab, 'demo/client', server, 9000, 'warm', 3000)).stdout === 'warm', 20_000, 250);

  await t.test('a connection stays open and working across several certificate renewals', async (t) => {
    const renewals = async (node: string): Promise<number> => sample(await scrapeAgent(lab, node), 'rondo_cert_renewals_total', 'result="success"');
    const certs = async (node: string): Promise<{ identity: string; notAfter: string }[]> => JSON.parse(await agentAdmin(lab, node, '/certs')) as { identity: string; notAfter: string }[];
    const before = { n1: await renewals('node-1'), n2: await renewals('node-2'), cert: (await certs('node-1'))[0]?.notAfter };
    const file = join(dir, 'hold.mjs');
    writeFileSync(file, HOLD);
    const r = await lab.exec('demo/client', [process.execPath, file, server, '9000', String(HOLD_MS)], { allowFail: true, timeoutMs: HOLD_MS + 20_000 });
    const out = JSON.parse(r.stdout || '{}') as { sent?: number; echoed?: number; errors?: string[] };
    t.ok((out.sent ?? 0) >= 14, `kept sending for ${HOLD_MS / 1000} s (${out.sent} messages)`);
    t.equal(out.echoed, out.sent, 'every message came back on the same connection');
    t.same(out.errors, [], 'no error, no close');
    const after = { n1: await renewals('node-1'), n2: await renewals('node-2'), cert: (await certs('node-1'))[0]?.notAfter };
    t.ok(after.n1 - before.n1 >= 2, `node-1 renewed the client certificate at least twice (${after.n1 - before.n1})`);
    t.ok(after.n2 - before.n2 >= 2, `node-2 renewed the server certificate at least twice (${after.n2 - before.n2})`);
    t.not(after.cert, before.cert, 'the client certificate in use now is a newer one');
    t.equal((await tcpSend(lab, 'demo/client', server, 9000, 'new-after-renewals', 3000)).stdout, 'new-after-renewals', 'a new connection uses the renewed certificates');
  });

  await t.test('agent restart: identical rules before and after, no duplicates, new connections work', async (t) => {
    await t.rejects(lab.restartMeshProcess('node-agent/node-9'), { code: 'RONDO_E_LAB_UNKNOWN_NAME', message: /known: controller, node-agent\/node-1, node-agent\/node-2/ }, 'an unknown process name is refused with the known ones');
    const before = await kernelState(lab, 'node-1');
    t.match(before, /RONDO-/, 'capture rules are in place');
    const oldPid = lab.processPid('node-agent/node-1');
    await lab.restartMeshProcess('node-agent/node-1');
    const newPid = lab.processPid('node-agent/node-1');
    t.ok(newPid !== undefined && newPid !== oldPid, `a new agent process runs (${oldPid} -> ${newPid})`);
    const after = await kernelState(lab, 'node-1');
    t.equal(after, before, 'iptables-save and ipset save are identical');
    const jumps = after.split('\n').filter((l) => /^-A (PREROUTING|OUTPUT|FORWARD|INPUT|POSTROUTING) .*-j RONDO-/.test(l));
    t.equal(new Set(jumps).size, jumps.length, `no duplicate jumps into RONDO chains (${jumps.length})`);
    let reply = '';
    await waitUntil('a new connection after the restart', async () => {
      reply = (await tcpSend(lab, 'demo/client', server, 9000, 'after-restart', 3000)).stdout;
      return reply === 'after-restart';
    }, 15_000, 250);
    t.equal(reply, 'after-restart', 'new connections work after the restart');
    t.equal(await kernelState(lab, 'node-1'), before, 'still identical once the new agent applied its config');
  });
});
