import t from 'tap';
import type { Test } from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Controller } from '../../controller/controller.ts';
import type { ControllerOptions } from '../../controller/controller.ts';
import { CertificateAuthority } from '../../controller/ca.ts';
import { TokenFileAuthenticator } from '../../controller/push/auth.ts';
import { FileSource } from '../../controller/sources/files.ts';
import { createControllerMetrics } from '../../controller/metrics.ts';
import { parseControllerFlags } from '../../controller/flags.ts';
import { PushClient } from '../../common/push-client.ts';
import { createLogger } from '../../common/log.ts';
import { generateKeyAndCsr } from '../../common/pki.ts';
import { spiffeIdOf } from '../../common/spiffe.ts';

const quiet = createLogger('test', { write: () => true }, 'error');

function podYaml(name: string, ip: string, node = 'node-1', sa = 'web'): string {
  return `apiVersion: v1\nkind: Pod\nmetadata: { name: ${name}, namespace: demo, uid: uid-${name}, labels: { app: web } }\nspec: { nodeName: ${node}, serviceAccountName: ${sa} }\nstatus: { phase: Running, podIP: ${ip} }\n`;
}

async function setup(t: Test, onInvalid?: (i: readonly { kind: string; name: string; reason: string }[]) => void, extra: Partial<ControllerOptions> = {}) {
  const root = mkdtempSync(join(tmpdir(), 'rondo-ctl-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const state = join(root, 'state');
  mkdirSync(state);
  writeFileSync(join(state, 'ns.yaml'), 'apiVersion: v1\nkind: Namespace\nmetadata: { name: demo, labels: { rondo.dev/dataplane-mode: ambient } }\n');
  writeFileSync(join(state, 'web-1.yaml'), podYaml('web-1', '10.244.1.5'));
  const ca = await CertificateAuthority.loadOrCreate({ dir: join(root, 'ca'), trustDomain: 'cluster.local', ttlSeconds: 3600 });
  const metrics = createControllerMetrics();
  const ctl = await Controller.create({
    listen: '127.0.0.1', pushPort: 0, metricsPort: 0, trustDomain: 'cluster.local', debounceMs: 30,
    authenticator: new TokenFileAuthenticator({
      'node-1-token-0123456789': { kind: 'node-agent', node: 'node-1' },
      'wp-token-0123456789abcd': { kind: 'waypoint', namespace: 'demo', name: 'wp' },
    }),
    ca, log: quiet, metrics, ...(onInvalid !== undefined ? { onInvalid } : {}), ...extra,
    sources: (sink) => [new FileSource({ dir: state, sink, log: quiet, rescanMs: 0, settleMs: 5 })],
  });
  t.teardown(() => ctl.close());
  const client = (token: string, proxy: ConstructorParameters<typeof PushClient>[0]['proxy']): PushClient => {
    const c = new PushClient({ url: `wss://127.0.0.1:${ctl.ports.push}`, token, proxy, caPems: ca.trustBundle, onConfig: () => undefined, log: quiet, backoff: { initialMs: 20 } });
    t.teardown(() => c.close());
    c.start();
    return c;
  };
  return { ctl, state, client, metrics, ca };
}

function until(pred: () => boolean, ms = 5000): Promise<void> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const tick = (): void => (pred() ? resolve() : Date.now() - start > ms ? reject(new Error('timeout')) : void setTimeout(tick, 5));
    tick();
  });
}

t.test('a file change reaches a connected node agent; a burst is debounced into one version', async (t) => {
  const h = await setup(t);
  const c = h.client('node-1-token-0123456789', { kind: 'node-agent', node: 'node-1' });
  const first = await c.ready();
  t.same([...first.workloads.values()].map((w) => w.identity), ['spiffe://cluster.local/ns/demo/sa/web']);
  t.same(first.mesh.trustBundle, h.ca.trustBundle, 'trust bundle pushed from the CA');

  const v0 = h.ctl.version;
  for (let i = 2; i <= 11; i++) writeFileSync(join(h.state, `web-${i}.yaml`), podYaml(`web-${i}`, `10.244.1.${i + 10}`));
  await until(() => c.config?.workloads.size === 11);
  t.ok(h.ctl.version - v0 <= 3, `10 files written in a burst became ${h.ctl.version - v0} version(s)`);

  const res = await fetch(`http://127.0.0.1:${h.ctl.ports.http}/debug/proxies`);
  const rows = (await res.json()) as { proxy: string; ackedVersion: number }[];
  t.match(rows, [{ proxy: 'node-agent/node-1' }]);
  const ready = await fetch(`http://127.0.0.1:${h.ctl.ports.http}/healthz/ready`);
  t.equal(ready.status, 200);
  const metrics = await (await fetch(`http://127.0.0.1:${h.ctl.ports.http}/metrics`)).text();
  t.match(metrics, /rondo_controller_connected_proxies\{kind="node-agent"\} 1/);
});

t.test('CSR node authorization: a node agent gets certs only for enrolled pods on its node; a waypoint only its own', async (t) => {
  const h2 = await setup(t);
  writeFileSync(join(h2.state, 'db.yaml'), podYaml('db-1', '10.244.2.5', 'node-2', 'db'));
  const agent = h2.client('node-1-token-0123456789', { kind: 'node-agent', node: 'node-1' });
  await agent.ready();
  await until(() => h2.ctl.snapshot?.identitiesByNode.get('node-2') !== undefined);

  const web = await generateKeyAndCsr('spiffe://cluster.local/ns/demo/sa/web');
  const chain = await agent.sign('spiffe://cluster.local/ns/demo/sa/web', web.csrPem);
  t.equal(spiffeIdOf(chain[0]), 'spiffe://cluster.local/ns/demo/sa/web', 'signed for a pod on its node');
  const db = await generateKeyAndCsr('spiffe://cluster.local/ns/demo/sa/db');
  await t.rejects(agent.sign('spiffe://cluster.local/ns/demo/sa/db', db.csrPem), /no pod with that service account is scheduled on node-1/);
  await t.rejects(agent.sign('spiffe://cluster.local/ns/demo/sa/web', db.csrPem), /rejected by the CA/, 'CSR whose SAN differs from the asked identity');

  const wp = h2.client('wp-token-0123456789abcd', { kind: 'waypoint', namespace: 'demo', name: 'wp' });
  await wp.ready();
  const own = await generateKeyAndCsr('spiffe://cluster.local/ns/demo/sa/wp');
  t.ok((await wp.sign('spiffe://cluster.local/ns/demo/sa/wp', own.csrPem)).length >= 1);
  await t.rejects(wp.sign('spiffe://cluster.local/ns/demo/sa/web', web.csrPem), /may only hold spiffe:\/\/cluster.local\/ns\/demo\/sa\/wp/);
  const csrs = await h2.metrics.csrs.get();
  t.same(csrs.values.map((v) => [v.labels['result'], v.value]).sort(), [['refused', 3], ['signed', 2]]);
});

t.test('CSR node authorization: a pod on the node that is not enrolled gives its agent no certificate for it', async (t) => {
  const h = await setup(t);
  writeFileSync(join(h.state, 'plain.yaml'), [
    'apiVersion: v1\nkind: Namespace\nmetadata: { name: plain }\n',
    'apiVersion: v1\nkind: Pod\nmetadata: { name: legacy-1, namespace: plain, uid: uid-legacy-1 }\nspec: { nodeName: node-1, serviceAccountName: legacy }\nstatus: { phase: Running, podIP: 10.244.1.40 }\n',
    // Opted out inside an ambient namespace.
    'apiVersion: v1\nkind: Pod\nmetadata: { name: batch-1, namespace: demo, uid: uid-batch-1, labels: { rondo.dev/dataplane-mode: none } }\nspec: { nodeName: node-1, serviceAccountName: batch }\nstatus: { phase: Running, podIP: 10.244.1.41 }\n',
    // One opted-out pod of a service account that also has an enrolled pod on the node.
    'apiVersion: v1\nkind: Pod\nmetadata: { name: web-optout, namespace: demo, uid: uid-web-optout, labels: { rondo.dev/dataplane-mode: none } }\nspec: { nodeName: node-1, serviceAccountName: web }\nstatus: { phase: Running, podIP: 10.244.1.42 }\n',
  ].join('---\n'));
  const agent = h.client('node-1-token-0123456789', { kind: 'node-agent', node: 'node-1' });
  await agent.ready();
  await until(() => h.ctl.snapshot?.resources.workloads.has('uid-legacy-1') === true && h.ctl.snapshot.resources.workloads.has('uid-web-optout'));

  for (const id of ['spiffe://cluster.local/ns/plain/sa/legacy', 'spiffe://cluster.local/ns/demo/sa/batch']) {
    const k = await generateKeyAndCsr(id);
    await t.rejects(agent.sign(id, k.csrPem), { message: /not enrolled in the mesh \(label the namespace or pod rondo\.dev\/dataplane-mode=ambient\)/ }, `${id}: refused, and the reason says why`);
  }
  const web = await generateKeyAndCsr('spiffe://cluster.local/ns/demo/sa/web');
  t.equal(spiffeIdOf((await agent.sign('spiffe://cluster.local/ns/demo/sa/web', web.csrPem))[0]), 'spiffe://cluster.local/ns/demo/sa/web', 'an enrolled pod still gets its cert, even beside an opted-out pod of the same account');

  // Enrolling the namespace is what makes the identity obtainable.
  writeFileSync(join(h.state, 'plain.yaml'), [
    'apiVersion: v1\nkind: Namespace\nmetadata: { name: plain, labels: { rondo.dev/dataplane-mode: ambient } }\n',
    'apiVersion: v1\nkind: Pod\nmetadata: { name: legacy-1, namespace: plain, uid: uid-legacy-1 }\nspec: { nodeName: node-1, serviceAccountName: legacy }\nstatus: { phase: Running, podIP: 10.244.1.40 }\n',
  ].join('---\n'));
  await until(() => h.ctl.snapshot?.identitiesByNode.get('node-1')?.has('spiffe://cluster.local/ns/plain/sa/legacy') === true);
  const legacy = await generateKeyAndCsr('spiffe://cluster.local/ns/plain/sa/legacy');
  t.equal(spiffeIdOf((await agent.sign('spiffe://cluster.local/ns/plain/sa/legacy', legacy.csrPem))[0]), 'spiffe://cluster.local/ns/plain/sa/legacy');
  const csrs = await h.metrics.csrs.get();
  t.same(csrs.values.map((v) => [v.labels['result'], v.value]).sort(), [['refused', 2], ['signed', 2]]);
});

t.test('an invalid resource is reported (metric, debug endpoint, status hook) and the rest still reaches proxies', async (t) => {
  const reports: string[][] = [];
  const h = await setup(t, (inv) => reports.push(inv.map((i) => `${i.kind}/${i.name}`)));
  const c = h.client('node-1-token-0123456789', { kind: 'node-agent', node: 'node-1' });
  await c.ready();
  writeFileSync(join(h.state, 'pol.yaml'), [
    'apiVersion: security.rondo.dev/v1alpha1', 'kind: AuthorizationPolicy', 'metadata: { name: bad, namespace: demo }', 'spec: { action: ALOW }',
    '---',
    'apiVersion: security.rondo.dev/v1alpha1', 'kind: AuthorizationPolicy', 'metadata: { name: good, namespace: demo }', 'spec: { action: DENY, rules: [{ from: [{ source: { namespaces: [evil] } }] }] }',
  ].join('\n'));
  await until(() => c.config?.authorizationPolicies.has('demo/good') === true);
  t.notOk(c.config?.authorizationPolicies.has('demo/bad'));
  t.same(reports.at(-1), ['AuthorizationPolicy/bad']);
  const inv = (await (await fetch(`http://127.0.0.1:${h.ctl.ports.http}/debug/invalid`)).json()) as { name: string; reason: string }[];
  t.match(inv, [{ name: 'bad', reason: /action/ }]);
  t.match(await (await fetch(`http://127.0.0.1:${h.ctl.ports.http}/metrics`)).text(), /rondo_controller_invalid_resources\{kind="AuthorizationPolicy"\} 1/);
});

t.test('a root added to the CA directory for rotation reaches connected proxies; one that does not load is refused', async (t) => {
  const h = await setup(t);
  const c = h.client('node-1-token-0123456789', { kind: 'node-agent', node: 'node-1' });
  t.same((await c.ready()).mesh.trustBundle, h.ca.trustBundle);
  const root = h.ca.trustBundle[0]!;
  const caDir = join(h.state, '..', 'ca');
  const next = await CertificateAuthority.loadOrCreate({ dir: join(h.state, '..', 'next-ca'), trustDomain: 'cluster.local', ttlSeconds: 3600 });
  writeFileSync(join(caDir, 'trust-bundle-next.pem'), next.trustBundle[0]!);
  t.equal(h.ctl.refreshTrustBundle(), true, 'the new root is picked up without a restart');
  await until(() => c.config?.mesh.trustBundle.length === 2);
  t.same(c.config?.mesh.trustBundle, [root, next.trustBundle[0]], 'the proxy trusts both roots, the active one first');
  t.equal(h.ctl.refreshTrustBundle(), false, 'nothing changed: no new version');

  writeFileSync(join(caDir, 'trust-bundle-bad.pem'), 'garbage');
  const v = h.ctl.version;
  t.equal(h.ctl.refreshTrustBundle(), false, 'a file without CA certificates is refused');
  t.equal(h.ctl.version, v, 'and nothing is pushed');
  rmSync(join(caDir, 'trust-bundle-bad.pem'));

  rmSync(join(caDir, 'trust-bundle-next.pem'));
  t.equal(h.ctl.refreshTrustBundle(), true, 'a root dropped after rotation');
  await until(() => c.config?.mesh.trustBundle.length === 1);
  t.same(c.config?.mesh.trustBundle, [root]);
});

t.test('test-only unchecked bundle file: its content is pushed as an extra root once it exists (the proxy refuses it)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rondo-ctl-extra-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'extra.pem');
  const h = await setup(t, undefined, { debugUncheckedTrustBundleFile: file, trustBundleRefreshMs: 20 });
  const c = h.client('node-1-token-0123456789', { kind: 'node-agent', node: 'node-1' });
  t.same((await c.ready()).mesh.trustBundle, h.ca.trustBundle, 'absent file: nothing added');
  writeFileSync(file, 'garbage');
  await until(() => c.rejected.some((r) => r.type === 'mesh'));
  t.match(c.rejected, [{ type: 'mesh', key: 'trustBundle', reason: /entry 1 is not a PEM certificate/ }], 'picked up by the periodic refresh and refused by the proxy');
  t.same(c.config?.mesh.trustBundle, h.ca.trustBundle, 'the proxy keeps the good bundle');
  writeFileSync(join(h.state, 'web-2.yaml'), podYaml('web-2', '10.244.1.6'));
  await until(() => c.config?.workloads.size === 2);
  t.pass('later changes still reach it');
});

t.test('flags: required flags, IP check and numeric ranges give clear errors', (t) => {
  const base = ['--files', '/s', '--listen', '10.250.0.2', '--ca-dir', '/c', '--tokens', '/t.json'];
  t.match(parseControllerFlags(base), { files: '/s', listen: '10.250.0.2', trustDomain: 'cluster.local', pushPort: 15012, metricsPort: 15014, debounceMs: 50, certTtlSeconds: 86400 });
  t.match(parseControllerFlags([...base, '--debounce-ms', '10', '--cert-ttl', '600']), { debounceMs: 10, certTtlSeconds: 600 });
  t.throws(() => parseControllerFlags(base.slice(2)), /exactly one of --files .* or --kubeconfig/);
  t.throws(() => parseControllerFlags([...base, '--kubeconfig', '/k']), /exactly one of/);
  t.match(parseControllerFlags(['--kubeconfig', 'default', ...base.slice(2)]), { files: undefined, kubeconfig: 'default' });
  t.throws(() => parseControllerFlags([...base.slice(0, 2), '--listen', 'ctl.local', ...base.slice(4)]), /--listen must be an IP address/);
  t.throws(() => parseControllerFlags([...base, '--push-port', '70000']), /--push-port must be between 0 and 65535/);
  t.throws(() => parseControllerFlags([...base, '--debounce', '5']), /Unknown option '--debounce'/);
  t.equal(parseControllerFlags(base).debugUncheckedTrustBundleFile, undefined, 'the test-only bundle hook is off by default');
  t.equal(parseControllerFlags([...base, '--debug-unchecked-trust-bundle-file', '/x.pem']).debugUncheckedTrustBundleFile, '/x.pem');
  t.equal(parseControllerFlags(base).debugTokenFile, undefined, '/debug/* is local-only by default');
  t.equal(parseControllerFlags([...base, '--debug-token-file', '/d']).debugTokenFile, '/d');
  t.end();
});
