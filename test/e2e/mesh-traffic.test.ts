// Issue 4 §7 in a real lab (controller, node agents, iptables, TLS): unmodified clients reach
// services by name and VIP and pods by IP, across nodes and on the same node; the underlay
// only carries TLS to 15008 (or the controller's 15012); TCP metrics count the app bytes.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deploymentDoc, labDoc, labSpec, namespaceDoc, serviceDoc, tcpEcho } from '../helpers/lab-specs.ts';
import { labSkipReason, withLab } from '../helpers/lab.ts';
import { captureBridge, sample, scrapeAgent, scratchDir, tcpPackets, tcpSend, waitUntil } from '../helpers/mesh.ts';

const skip = labSkipReason();
const deployment = (name: string, node: string, command: string[]): string =>
  deploymentDoc({ namespace: 'demo', name, node, labels: { version: 'v1' }, command });
const service = (name: string, targetPort: number): string => serviceDoc({ namespace: 'demo', name, port: 80, targetPort });
const spec = labSpec(
  labDoc(),
  namespaceDoc('demo', { ambient: true }),
  deployment('far', 'node-2', tcpEcho(9000)), service('far', 9000),
  deployment('near', 'node-1', tcpEcho(9000)), service('near', 9000),
  deployment('web', 'node-2', ['rondo-demo', 'echo', '--port', '8080', '--body-bytes', '3000']), service('web', 8080),
  deployment('client', 'node-1', tcpEcho(9001)),
);

// Runs in a pod: 'bulk' sends <bytes> random bytes, half-closes and checks the echo's hash;
// 'reset' sends some data, waits for part of the echo, then resets the connection.
const BULK = `
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
const [mode, host, port, bytes] = process.argv.slice(2);
const s = net.connect({ host, port: Number(port), allowHalfOpen: true });
const out = { mode };
const done = () => process.stdout.write(JSON.stringify(out), () => process.exit(0));
s.on('error', (e) => { out.error = e.code ?? e.message; done(); });
if (mode === 'bulk') {
  const data = randomBytes(Number(bytes));
  const h = createHash('sha256');
  let got = 0;
  s.on('data', (d) => { got += d.length; h.update(d); });
  s.on('end', () => { out.got = got; out.intact = h.digest('hex') === createHash('sha256').update(data).digest('hex'); done(); });
  s.on('connect', () => s.end(data));
} else {
  s.on('connect', () => s.write(Buffer.alloc(65536, 1)));
  s.once('data', () => { s.resetAndDestroy(); out.reset = true; setTimeout(done, 100); });
}
`;

t.test('mesh traffic in a lab', { skip: skip ?? false, timeout: 180_000 }, async (t) => {
  const lab = await withLab(t, spec);
  const dir = scratchDir(t);
  await Promise.all([lab.waitForPort('demo/far', 9000, 20_000), lab.waitForPort('demo/near', 9000, 20_000), lab.waitForPort('demo/web', 8080, 20_000)]);
  // The agents were ready when up() returned; the first HBONE connection still pays for the
  // certificate, so allow a bounded warm-up.
  await waitUntil('first mesh connection client -> far', async () => (await tcpSend(lab, 'demo/client', lab.podIp('demo/far'), 9000, 'warm')).stdout === 'warm', 20_000, 250);

  await t.test('unmodified clients reach services by name and VIP and pods by IP, across nodes and on one node; the underlay only sees TLS to 15008', async (t) => {
    const cap = await captureBridge(t, lab, dir);
    const marker = `rondo-secret-${randomBytes(8).toString('hex')}`;
    const targets: [string, string, number][] = [
      ['far by name', 'far.demo', 80], ['far by full name', 'far.demo.svc.cluster.local', 80], ['far by VIP', lab.serviceIp('demo/far'), 80], ['far by pod IP', lab.podIp('demo/far'), 9000],
      ['near by name', 'near', 80], ['near by VIP', lab.serviceIp('demo/near'), 80], ['near by pod IP', lab.podIp('demo/near'), 9000],
    ];
    for (const [what, host, port] of targets) {
      const r = await tcpSend(lab, 'demo/client', host, port, `${marker}-${what}`);
      t.equal(r.stdout, `${marker}-${what}`, `${what}: echoed (${r.stderr.trim().split('\n').pop() ?? ''})`);
    }
    const m1 = await scrapeAgent(lab, 'node-1');
    t.ok(sample(m1, 'istio_tcp_connections_closed_total', 'reporter="source"', 'source_workload="client"', 'destination_workload="near"') >= 3,
      'same-node connections went through node-1\'s agent (not around it)');
    t.ok(sample(m1, 'istio_tcp_connections_closed_total', 'reporter="source"', 'source_workload="client"', 'destination_workload="far"', 'connection_security_policy="mutual_tls"') >= 4,
      'cross-node connections were tunnelled with mutual TLS');
    const curl = await lab.exec('demo/client', ['curl', '-s', '-m', '5', '-o', '/dev/null', '-w', '%{http_code}', '--data-binary', marker, `http://web.demo/${marker}`], { allowFail: true });
    t.equal(curl.stdout, '200', 'curl reaches an HTTP service on the other node by name');
    await cap.stop();

    const bytes = readFileSync(cap.file);
    t.ok(bytes.length > 24, 'capture written');
    t.equal(bytes.indexOf(marker), -1, 'the marker never crosses the underlay in plaintext');
    const packets = await tcpPackets(cap.file);
    const toHbone = packets.filter((p) => p.dport === 15008 && p.dst === lab.podIp('demo/far'));
    t.ok(toHbone.length > 0, `node-1 -> far's HBONE port seen on the underlay (${packets.length} TCP packets)`);
    const allowed = new Set([15008, 15012]);
    const stray = packets.filter((p) => !allowed.has(p.sport) && !allowed.has(p.dport));
    t.same(stray.map((p) => p.line), [], 'every TCP packet on the underlay is to or from 15008 (HBONE) or 15012 (controller)');
  });

  await t.test('TCP metrics of both agents match the application bytes exactly', async (t) => {
    const series = ['source_workload="client"', 'source_workload_namespace="demo"', 'destination_workload="web"', 'connection_security_policy="mutual_tls"'];
    const read = async (): Promise<Record<string, number>> => {
      const [m1, m2] = await Promise.all([scrapeAgent(lab, 'node-1'), scrapeAgent(lab, 'node-2')]);
      return {
        srcSent: sample(m1, 'istio_tcp_sent_bytes_total', 'reporter="source"', ...series),
        srcRecv: sample(m1, 'istio_tcp_received_bytes_total', 'reporter="source"', ...series),
        srcClosed: sample(m1, 'istio_tcp_connections_closed_total', 'reporter="source"', ...series),
        dstSent: sample(m2, 'istio_tcp_sent_bytes_total', 'reporter="destination"', ...series),
        dstRecv: sample(m2, 'istio_tcp_received_bytes_total', 'reporter="destination"', ...series),
        dstClosed: sample(m2, 'istio_tcp_connections_closed_total', 'reporter="destination"', ...series),
      };
    };
    const before = await read();
    const body = 'x'.repeat(1234);
    const r = await lab.exec('demo/client', ['curl', '-s', '-m', '5', '-o', '/dev/null', '-w', '%{http_code} %{size_request} %{size_upload} %{size_header} %{size_download}',
      '--data-binary', body, 'http://web.demo/metrics-check'], { allowFail: true });
    const [code, sizeRequest, sizeUpload, sizeHeader, sizeDownload] = r.stdout.split(' ').map(Number);
    t.equal(code, 200, 'request answered');
    t.equal(sizeUpload, 1234);
    t.equal(sizeDownload, 3000, 'the echo sent its fixed 3000-byte body');
    const request = sizeRequest!; // curl's size_request already includes the uploaded body
    t.ok(request > 1234, 'request bytes include headers and body');
    const response = sizeHeader! + sizeDownload!;
    let after = before;
    await waitUntil('both agents to count the closed connection', async () => {
      after = await read();
      return after['srcClosed']! > before['srcClosed']! && after['dstClosed']! > before['dstClosed']!;
    }, 10_000, 250);
    const delta = (k: string): number => after[k]! - before[k]!;
    // Istio's definition for both reporters: received = request bytes, sent = response bytes.
    t.equal(delta('srcRecv'), request, `source reporter: received_bytes = request bytes (${request})`);
    t.equal(delta('srcSent'), response, `source reporter: sent_bytes = response bytes (${response})`);
    t.equal(delta('dstRecv'), request, 'destination reporter: received_bytes = request bytes');
    t.equal(delta('dstSent'), response, 'destination reporter: sent_bytes = response bytes');
  });

  await t.test('a large transfer arrives intact; a pod that resets mid-transfer leaves nothing open on either agent', async (t) => {
    const file = join(dir, 'bulk.mjs');
    writeFileSync(file, BULK);
    const far = lab.podIp('demo/far');
    const size = 4 * 1024 * 1024;
    const bulk = await lab.exec('demo/client', [process.execPath, file, 'bulk', far, '9000', String(size)], { allowFail: true, timeoutMs: 60_000 });
    t.same(JSON.parse(bulk.stdout || '{}'), { mode: 'bulk', got: size, intact: true }, '4 MiB echoed back intact across nodes');
    const reset = await lab.exec('demo/client', [process.execPath, file, 'reset', far, '9000'], { allowFail: true, timeoutMs: 20_000 });
    t.same(JSON.parse(reset.stdout || '{}'), { mode: 'reset', reset: true }, 'the client reset its connection mid-transfer');
    const open = async (): Promise<number[]> => Promise.all(['node-1', 'node-2'].map(async (n) => sample(await scrapeAgent(lab, n), 'rondo_agent_open_connections')));
    let last: number[] = [];
    await waitUntil('both agents to release the reset connection', async () => { last = await open(); return last.every((x) => x === 0); }, 5000, 200)
      .then(() => t.pass('no connection left open on node-1 or node-2'), () => t.fail(`connections still tracked (node-1, node-2): ${last.join(', ')}`));
    t.equal((await tcpSend(lab, 'demo/client', far, 9000, 'after-reset')).stdout, 'after-reset', 'the next connection works');
  });
});
