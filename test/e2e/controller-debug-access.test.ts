// The controller's /debug/* pages in a real lab: refused to another network namespace (a node,
// where every hostNetwork pod lives) unless it sends the --debug-token-file token; served to
// the controller's own netns, which is where `rondo lab status` asks; /metrics and
// /healthz/ready stay open to everyone (Prometheus, the kubelet).
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deploymentDoc, labDoc, labSpec, namespaceDoc, tcpEcho } from '../helpers/lab-specs.ts';
import { labSkipReason, withLab } from '../helpers/lab.ts';
import { controllerDebug, scratchDir } from '../helpers/mesh.ts';

const skip = labSkipReason();
const TOKEN = 'e2e-debug-token-0123456789abcdef';
const spec = labSpec(
  labDoc({ nodes: 1 }),
  namespaceDoc('demo', { ambient: true }),
  deploymentDoc({ namespace: 'demo', name: 'server', node: 'node-1', command: tcpEcho(9000) }),
);

t.test('controller /debug/*: only its own host or the debug token; metrics and health open to all', { skip: skip ?? false, timeout: 120_000 }, async (t) => {
  const dir = scratchDir(t, 'rondo-e2e-debug-');
  const tokenFile = join(dir, 'debug-token');
  writeFileSync(tokenFile, `${TOKEN}\n`);
  const saved = process.env['RONDO_CONTROLLER_ARGS'];
  process.env['RONDO_CONTROLLER_ARGS'] = `--debug-token-file ${tokenFile}`;
  t.teardown(() => {
    if (saved === undefined) delete process.env['RONDO_CONTROLLER_ARGS'];
    else process.env['RONDO_CONTROLLER_ARGS'] = saved;
  });
  const lab = await withLab(t, spec);
  const ctl = lab.plan.controller;
  const nodeIp = lab.plan.nodes[0]!.ip;
  const fromNode = async (path: string, header?: string): Promise<{ status: number; body: string }> => {
    const r = await lab.execNode('node-1', ['curl', '-s', '-m', '3', ...(header !== undefined ? ['-H', header] : []), '-o', '-', '-w', '\n%{http_code}',
      `http://${ctl.ip}:15014${path}`], { allowFail: true, timeoutMs: 6000 });
    const at = r.stdout.lastIndexOf('\n');
    return { status: Number(r.stdout.slice(at + 1)) || 0, body: r.stdout.slice(0, Math.max(at, 0)) };
  };

  const anon = await fromNode('/debug/proxies');
  t.equal(anon.status, 403, 'a node (and so any hostNetwork pod) is refused');
  t.match(anon.body, new RegExp(`not served to ${nodeIp.replaceAll('.', '\\.')}: .*Authorization: Bearer`), `the reason names the caller and the way in: ${anon.body}`);
  t.notMatch(anon.body, /node-agent/, 'and shows none of the page');
  t.equal((await fromNode('/debug/invalid')).status, 403);
  const wrong = await fromNode('/debug/proxies', 'Authorization: Bearer not-the-token-0123456789');
  t.equal(wrong.status, 403);
  t.match(wrong.body, /wrong debug token/);

  const withToken = await fromNode('/debug/proxies', `Authorization: Bearer ${TOKEN}`);
  t.equal(withToken.status, 200, 'the debug token opens it from another host');
  t.match(JSON.parse(withToken.body), [{ proxy: 'node-agent/node-1' }]);

  t.equal((await fromNode('/metrics')).status, 200, '/metrics stays open for Prometheus');
  t.equal((await fromNode('/healthz/ready')).status, 200, '/healthz/ready stays open for the kubelet');

  t.match(JSON.parse(await controllerDebug(lab, 'proxies')), [{ proxy: 'node-agent/node-1' }], 'the controller\'s own netns needs no token');
  const st = await lab.status();
  t.equal(st.proxiesError, undefined, 'rondo lab status still reads the controller\'s proxies');
  t.match(st.proxies, [{ proxy: 'node-agent/node-1' }]);
});
