// Issue 4 §7 and §9 in a real lab: the HBONE port refuses TLS clients without a mesh
// certificate (openssl s_client), and bad input (not TLS, not HTTP/2, oversized headers, a
// malformed CONNECT authority, a client reset mid-stream) is refused and counted while the
// agent keeps serving.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { deploymentDoc, labDoc, labSpec, namespaceDoc, tcpEcho } from '../helpers/lab-specs.ts';
import { labSkipReason, withLab } from '../helpers/lab.ts';
import { issueLeaf, makeCa, runNodeScript, sample, scrapeAgent, scratchDir, tcpSend, waitUntil } from '../helpers/mesh.ts';

const skip = labSkipReason();
const spec = labSpec(
  labDoc(),
  namespaceDoc('demo', { ambient: true }),
  deploymentDoc({ namespace: 'demo', name: 'server', node: 'node-2', command: tcpEcho(9000) }),
  deploymentDoc({ namespace: 'demo', name: 'client', node: 'node-1', command: tcpEcho(9001) }),
);

// Runs in node-1's netns: one probe per kind of bad input against <ip>:15008, then a good
// tunnel, printing one JSON object with what each probe saw.
const PROBES = `
import net from 'node:net';
import tls from 'node:tls';
import http2 from 'node:http2';
import { readFileSync } from 'node:fs';
const [ip, certFile, keyFile, caFile, port] = process.argv.slice(2);
const creds = { cert: readFileSync(certFile), key: readFileSync(keyFile), ca: readFileSync(caFile) };
const out = {};
const timeout = (ms, what) => new Promise((_, rej) => setTimeout(() => rej(new Error('timeout: ' + what)), ms));
function rawClose(sock, payload) {
  return new Promise((resolve) => {
    let got = 0;
    sock.on('data', (d) => { got += d.length; });
    sock.on('error', (e) => resolve({ closed: true, error: e.code ?? e.message, bytes: got }));
    sock.on('close', () => resolve({ closed: true, bytes: got }));
    sock.write(payload);
    setTimeout(() => { resolve({ closed: false, bytes: got }); sock.destroy(); }, 4000);
  });
}
function session() {
  return http2.connect('https://' + ip + ':15008', { ...creds, servername: undefined, ALPNProtocols: ['h2'], minVersion: 'TLSv1.3', checkServerIdentity: () => undefined });
}
function connect(s, headers) {
  return new Promise((resolve) => {
    const st = s.request({ ':method': 'CONNECT', ...headers }, { endStream: false });
    st.on('response', (h) => resolve({ status: h[':status'], reason: h['rondo-refusal-reason'] ?? h['x-rondo-reason'] ?? null, stream: st }));
    st.on('error', (e) => resolve({ error: e.code ?? e.message, stream: st }));
    st.on('close', () => resolve({ closed: true, rstCode: st.rstCode, stream: st }));
  });
}
out.garbage = await rawClose(net.connect({ host: ip, port: 15008 }), 'GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n');
out.tlsNotH2 = await rawClose(tls.connect({ host: ip, port: 15008, ...creds, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined }), 'this is not an HTTP/2 preface\\r\\n\\r\\n');
const s = session();
s.on('error', () => undefined);
const big = await Promise.race([connect(s, { ':authority': ip + ':' + port, 'x-big': 'a'.repeat(20_000) }), timeout(5000, 'big')]).catch((e) => ({ error: String(e) }));
out.bigHeader = { status: big.status, error: big.error, rstCode: big.rstCode };
const s2 = s.closed || s.destroyed ? session() : s;
s2.on('error', () => undefined);
const bad = await Promise.race([connect(s2, { ':authority': 'not-an-ip:' + port }), timeout(5000, 'authority')]).catch((e) => ({ error: String(e) }));
out.badAuthority = { status: bad.status, error: bad.error };
const s3 = s2.closed || s2.destroyed ? session() : s2;
s3.on('error', () => undefined);
const mid = await connect(s3, { ':authority': ip + ':' + port });
out.resetMidStream = { status: mid.status };
if (mid.status === 200) {
  const echoed = await new Promise((resolve) => { mid.stream.once('data', (d) => resolve(d.toString())); mid.stream.write('half of a message'); });
  out.resetMidStream.echoed = echoed;
  mid.stream.close(http2.constants.NGHTTP2_CANCEL);
  await new Promise((r) => setTimeout(r, 300));
}
const good = await connect(s3, { ':authority': ip + ':' + port });
out.goodAfter = { status: good.status };
if (good.status === 200) {
  out.goodAfter.echoed = await new Promise((resolve) => {
    let d = '';
    good.stream.on('data', (c) => { d += c; });
    good.stream.on('end', () => resolve(d));
    good.stream.end('still-works');
  });
}
s3.close();
process.stdout.write(JSON.stringify(out), () => process.exit(0));
`;

t.test('HBONE port: certificates and bad input', { skip: skip ?? false, timeout: 180_000 }, async (t) => {
  const lab = await withLab(t, spec);
  const dir = scratchDir(t);
  await lab.waitForPort('demo/server', 9000, 20_000);
  const server = lab.podIp('demo/server');
  await waitUntil('client -> server over the mesh', async () => (await tcpSend(lab, 'demo/client', server, 9000, 'warm', 3000)).stdout === 'warm', 20_000, 250);
  const caDir = join(lab.runDir, 'ca');
  const meshCa = { cert: join(caDir, 'root-cert.pem'), key: join(caDir, 'root-key.pem') };
  const meshLeaf = await issueLeaf(dir, 'mesh-client', meshCa, 'spiffe://cluster.local/ns/demo/sa/client');
  const other = await makeCa(dir, 'other');
  const foreignLeaf = await issueLeaf(dir, 'foreign-client', other, 'spiffe://cluster.local/ns/demo/sa/client');
  const hboneRefused = async (reason: string): Promise<number> => sample(await scrapeAgent(lab, 'node-2'), 'rondo_agent_hbone_refused_total', `reason="${reason}"`);
  const sClient = async (extra: string[]): Promise<string> => {
    // The HTTP/2 client preface, then a pause so the server's verdict arrives before stdin ends.
    const r = await lab.execNode('node-1', ['sh', '-c', `(printf 'PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n'; sleep 1) | openssl s_client -connect ${server}:15008 -alpn h2 -tls1_3 -CAfile ${meshCa.cert} ${extra.join(' ')} 2>&1`], { allowFail: true, timeoutMs: 15_000 });
    return r.stdout;
  };

  await t.test('openssl s_client without a client certificate, or with one from another CA, is refused', async (t) => {
    const before = await hboneRefused('tls_handshake');
    const none = await sClient([]);
    t.match(none, /Verify return code: 0/, 'the server presented a mesh certificate');
    t.match(none, /alert certificate required|SSL alert number 116/, 'no client certificate: TLS 1.3 alert "certificate required" after the handshake');
    const foreign = await sClient(['-cert', foreignLeaf.cert, '-key', foreignLeaf.key]);
    // The agent drops the connection once the chain fails to verify: an alert, a reset or an EOF.
    t.match(foreign, /alert (unknown ca|bad certificate|decrypt error)|errno=104|SSL alert number (48|42)|unexpected eof while reading/, `certificate from another CA: alert or reset (${foreign.split('\n').slice(-4).join(' | ')})`);
    t.equal(await hboneRefused('tls_handshake'), before + 2, 'both handshakes counted as tls_handshake refusals');
    const control = await sClient(['-cert', meshLeaf.cert, '-key', meshLeaf.key]);
    t.notMatch(control, /alert|errno=/, 'control: the same command with a mesh certificate is accepted');
  });

  await t.test('bad input on 15008 is refused and counted; the agent keeps serving', async (t) => {
    const agentPid = lab.processPid('node-agent/node-2');
    const reasons = ['tls_handshake', 'header_too_large', 'bad_authority', 'session_error', 'protocol_error', 'frame_error'];
    const before = Object.fromEntries(await Promise.all(reasons.map(async (r) => [r, await hboneRefused(r)] as const)));
    const r = await runNodeScript(lab, 'node-1', dir, 'probes', PROBES, [server, meshLeaf.cert, meshLeaf.key, meshCa.cert, '9000']);
    t.equal(r.code, 0, `probe script ran: ${r.stderr.slice(0, 400)}`);
    const out = JSON.parse(r.stdout) as Record<string, Record<string, unknown>>;
    t.comment(JSON.stringify(out));
    t.equal(out['garbage']?.['closed'], true, 'plain bytes (not TLS): connection closed');
    t.equal(out['tlsNotH2']?.['closed'], true, 'TLS but not HTTP/2: connection closed');
    t.ok(out['bigHeader']?.['status'] === 431 || out['bigHeader']?.['rstCode'] !== undefined || out['bigHeader']?.['error'] !== undefined, 'oversized header: 431 or stream refused');
    t.notOk(out['bigHeader']?.['status'] === 200, 'oversized header never opens a tunnel');
    t.equal(out['badAuthority']?.['status'], 400, 'CONNECT to "not-an-ip": 400');
    t.same(out['resetMidStream'], { status: 200, echoed: 'half of a message' }, 'a tunnel that the client then resets mid-stream');
    t.same(out['goodAfter'], { status: 200, echoed: 'still-works' }, 'a good CONNECT on the same session still works');
    const after = Object.fromEntries(await Promise.all(reasons.map(async (x) => [x, await hboneRefused(x)] as const)));
    t.ok(after['tls_handshake']! > before['tls_handshake']!, 'not-TLS bytes counted as tls_handshake');
    t.ok(after['session_error']! + after['protocol_error']! + after['frame_error']! > before['session_error']! + before['protocol_error']! + before['frame_error']!, 'TLS without HTTP/2 counted as a session/protocol error');
    t.ok(after['bad_authority'] === before['bad_authority']! + 1, 'malformed authority counted once');
    await waitUntil('node-2 to track no open connection after the probes', async () => sample(await scrapeAgent(lab, 'node-2'), 'rondo_agent_open_connections') === 0, 5000, 200)
      .then(() => t.pass('the reset tunnel and its upstream connection were released'), (e: unknown) => t.fail(String(e)));
    t.equal(lab.processPid('node-agent/node-2'), agentPid, 'the agent process never restarted');
    t.notMatch(readFileSync(join(lab.runDir, 'logs', 'agent-node-2.log'), 'utf8'), /worker died/, 'no data-path worker died');
    t.equal((await tcpSend(lab, 'demo/client', server, 9000, 'after-bad-input', 3000)).stdout, 'after-bad-input', 'a normal mesh request still works');
  });
});
