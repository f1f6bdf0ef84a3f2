import t from 'tap';
import type { Test } from 'tap';
import https from 'node:https';
import { WebSocketServer } from 'ws';
import type WebSocket from 'ws';
import { AuthorizationPolicy, IpBlock, L7Resource, ResourceSchemas, describeZodError } from '../../common/wire.ts';
import { PushClient } from '../../common/push-client.ts';
import { createLogger } from '../../common/log.ts';
import { selfSignedLocalhost } from '../controller/fixtures/tls.ts';

const quiet = createLogger('test', { write: () => true }, 'error');
const mesh = { trustDomain: 'cluster.local', trustBundle: [selfSignedLocalhost().certPem], rootNamespace: 'rondo-system' };
const svc = { group: '', kind: 'Service', name: 'web' };

function reason(r: { success: boolean; error?: Parameters<typeof describeZodError>[0] }): string {
  return r.success || r.error === undefined ? 'ok' : describeZodError(r.error);
}

t.test('ipBlocks: IPv4/IPv6 addresses and CIDRs with an in-range prefix; anything else is named', (t) => {
  for (const ok of ['10.0.0.0/8', '10.244.1.7', '10.1.2.3/24', '0.0.0.0/0', 'fd00::/64', '::/0', '::1', '::ffff:10.0.0.1', '2001:db8::/128']) t.ok(IpBlock.safeParse(ok).success, ok);
  for (const bad of ['10.0.0.0/33', 'fd00::/129', '10.0.0.0/', '10.0.0/8', '10.0.0.256', 'nonsense', '1.2.3.4/32/1', '1::2::3/64', '10.0.0.0/-1', ' 10.0.0.0/8']) {
    t.notOk(IpBlock.safeParse(bad).success, bad);
  }
  const pol = (ipBlocks: string[]): unknown => ({ namespace: 'demo', name: 'p', action: 'DENY', rules: [{ from: [{ ipBlocks }, { notIpBlocks: ['fd00::/200'] }] }] });
  t.match(reason(AuthorizationPolicy.safeParse(pol(['10.0.0.0/8', '10.0.0.0/33']))),
    /rules\.0\.from\.0\.ipBlocks\.1: "10\.0\.0\.0\/33" is not an IP address or CIDR .*; rules\.0\.from\.1\.notIpBlocks\.0: "fd00::\/200" is not an IP address or CIDR/);
  t.end();
});

const route = {
  kind: 'HTTPRoute', namespace: 'demo', name: 'r', creationTimestamp: '2025-01-31T12:00:00Z',
  spec: { parentRefs: [svc], rules: [{ matches: [{ path: { type: 'PathPrefix', value: '/api' } }], backendRefs: [{ name: 'web', port: 80, weight: 9 }] }] },
};

t.test('l7 resources: typed by kind, defaults filled, the parsed form parses to itself', (t) => {
  const r = L7Resource.parse(route);
  t.same(r.kind === 'HTTPRoute' ? r.spec.rules[0]?.backendRefs?.[0] : undefined, { group: '', kind: 'Service', name: 'web', port: 80, weight: 9 });
  t.same(L7Resource.parse(JSON.parse(JSON.stringify(r))), r, 'what the controller pushes is accepted unchanged');
  t.match(reason(L7Resource.safeParse({ ...route, spec: { rules: [{ matches: [{ path: { value: 'api' } }] }] } })), /spec\.rules\.0\.matches\.0\.path\.value: must be an absolute path/);
  t.match(reason(L7Resource.safeParse({ ...route, creationTimestamp: 'yesterday' })), /creationTimestamp: Invalid ISO datetime/);
  t.match(reason(L7Resource.safeParse({ kind: 'GRPCRoute', namespace: 'demo', name: 'g', spec: { rules: [{ matches: [{ method: {} }] }] } })), /spec\.rules\.0\.matches\.0\.method: one or both/);
  t.match(reason(L7Resource.safeParse({ kind: 'TrafficPolicy', namespace: 'demo', name: 'tp', spec: { targetRefs: [] } })), /spec\.targetRefs: Too small/);
  t.match(reason(L7Resource.safeParse({ kind: 'TrafficPolicy', namespace: 'demo', name: 'tp', creationTimestamp: '2025-01-31T12:00:00Z', spec: { targetRefs: [svc] } })), /Unrecognized key: "creationTimestamp"/);
  const gw = { kind: 'Gateway', namespace: 'demo', name: 'wp', spec: { gatewayClassName: 'rondo-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] } };
  t.same(L7Resource.parse(gw), gw, 'Gateways travel as they are');
  t.match(reason(L7Resource.safeParse({ ...route, kind: 'TCPRoute' })), /kind: Invalid discriminator value/);
  t.end();
});

/** A scripted controller: hands each connection to `onConn`. */
async function fakeController(t: Test, onConn: (ws: WebSocket) => void) {
  const tls = selfSignedLocalhost();
  const server = https.createServer({ key: tls.keyPem, cert: tls.certPem });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => onConn(ws));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => { for (const c of wss.clients) c.terminate(); wss.close(); server.close(() => r()); server.closeAllConnections(); }));
  return { url: `wss://127.0.0.1:${(server.address() as { port: number }).port}`, ca: tls.certPem };
}

function next(ws: WebSocket): Promise<Record<string, unknown>> {
  return new Promise((r) => ws.once('message', (d) => r(JSON.parse((d as Buffer).toString('utf8')) as Record<string, unknown>)));
}

t.test('a waypoint NACKs a bad route and a bad ipBlocks policy alone and keeps the good ones', async (t) => {
  let answer: Promise<Record<string, unknown>> | undefined;
  const ctl = await fakeController(t, (ws) => {
    void next(ws).then(() => {
      answer = next(ws);
      ws.send(JSON.stringify({
        type: 'snapshot', version: 3, nonce: 'n3', mesh,
        resources: {
          l7: [
            { key: 'HTTPRoute/demo/r', value: route },
            { key: 'HTTPRoute/demo/bad', value: { ...route, name: 'bad', spec: { parentRefs: [svc], rules: [{ filters: [{ type: 'ExtensionRef', extensionRef: { kind: 'F', name: 'f' } }] }] } } },
          ],
          authorizationPolicies: [
            { key: 'demo/typo', value: { namespace: 'demo', name: 'typo', action: 'ALLOW', rules: [{ from: [{ ipBlocks: ['10.244.0.0/166'] }] }] } },
            { key: 'demo/ok', value: { namespace: 'demo', name: 'ok', action: 'ALLOW', rules: [{ from: [{ ipBlocks: ['10.244.0.0/16'] }] }] } },
          ],
        },
      }));
    });
  });
  const c = new PushClient({ url: ctl.url, token: 'wp-token', proxy: { kind: 'waypoint', namespace: 'demo', name: 'wp' }, caPems: [ctl.ca], onConfig: () => undefined, log: quiet });
  t.teardown(() => c.close());
  c.start();
  const cfg = await c.ready();
  t.match(await answer, {
    type: 'nack', version: 3, nonce: 'n3',
    rejected: [
      { type: 'authorizationPolicies', key: 'demo/typo', reason: /rules\.0\.from\.0\.ipBlocks\.0: "10\.244\.0\.0\/166" is not an IP address or CIDR/ },
      { type: 'l7', key: 'HTTPRoute/demo/bad', reason: /spec\.rules\.0\.filters\.0\.type: ExtensionRef filters are not supported/ },
    ],
  });
  t.same([...cfg.l7.keys()], ['HTTPRoute/demo/r']);
  t.same([...cfg.authorizationPolicies.keys()], ['demo/ok']);
  const r = cfg.l7.get('HTTPRoute/demo/r');
  t.equal(r?.kind === 'HTTPRoute' ? r.spec.rules[0]?.matches[0]?.path.value : undefined, '/api', 'the proxy holds the typed route');
  t.ok(ResourceSchemas.l7 === L7Resource, 'the push client validates l7 with the typed schema');
});
