import t from 'tap';
import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { x509 } from '../../common/pki.ts';
import {
  formatSpiffeId, isSpiffeId, parseSpiffeId, principalOf, spiffeIdFor, spiffeIdOf, spiffeUrisOf, tryParseSpiffeId,
} from '../../common/spiffe.ts';
import { Workload } from '../../common/wire.ts';

const ID = 'spiffe://cluster.local/ns/demo/sa/web';

t.test('parseSpiffeId splits a valid ID and names the bad part otherwise', (t) => {
  t.same(parseSpiffeId(ID), { trustDomain: 'cluster.local', namespace: 'demo', serviceAccount: 'web' });
  t.equal(spiffeIdFor('cluster.local', 'demo', 'web'), ID);
  t.equal(formatSpiffeId('cluster.local', 'demo', 'web'), ID);
  const bad: [string, RegExp][] = [
    ['https://cluster.local/ns/demo/sa/web', /must start with spiffe:\/\//],
    ['spiffe://Cluster.Local/ns/demo/sa/web', /trust domain "Cluster.Local"/],
    ['spiffe:///ns/demo/sa/web', /trust domain ""/],
    ['spiffe://cluster.local/ns/demo', /must have the form/],
    ['spiffe://cluster.local/namespace/demo/sa/web', /must have the form/],
    ['spiffe://cluster.local/ns/demo/sa/web/extra', /must have the form/],
    ['spiffe://cluster.local/ns/../sa/web', /namespace "\.\."/],
    ['spiffe://cluster.local/ns/demo/sa/we b', /service account "we b"/],
    ['spiffe://cluster.local/ns//sa/web', /namespace ""/],
  ];
  for (const [id, re] of bad) {
    t.throws(() => parseSpiffeId(id), { code: 'RONDO_E_SPIFFE_ID', message: re }, id);
    t.equal(tryParseSpiffeId(id), undefined, `tryParse: ${id}`);
    t.notOk(isSpiffeId(id), `isSpiffeId: ${id}`);
  }
  t.throws(() => spiffeIdFor('cluster.local', 'a/b', 'web'), { code: 'RONDO_E_SPIFFE_ID' });
  t.end();
});

t.test('the push schema accepts exactly the IDs parseSpiffeId accepts', (t) => {
  const w = { uid: 'u', namespace: 'demo', name: 'web-1', workloadName: 'web', serviceAccount: 'web', ips: ['10.0.0.1'], node: 'n', labels: {}, enrolled: true };
  t.ok(Workload.safeParse({ ...w, identity: ID }).success);
  // The schema's old regex let these through; the CA would never sign them.
  for (const id of ['spiffe://Cluster.Local/ns/demo/sa/web', 'spiffe://cluster.local/ns/../sa/web', 'spiffe://cluster.local/ns/demo/sa/we b']) {
    t.notOk(Workload.safeParse({ ...w, identity: id }).success, id);
  }
  t.end();
});

t.test('principalOf drops the scheme, leaves the principal form as it is', (t) => {
  t.equal(principalOf(ID), 'cluster.local/ns/demo/sa/web');
  t.equal(principalOf('cluster.local/ns/demo/sa/web'), 'cluster.local/ns/demo/sa/web');
  t.equal(principalOf('*'), '*');
  t.end();
});

async function certWithSans(names: { type: 'url' | 'dns' | 'ip'; value: string }[]): Promise<string> {
  const keys = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
  const c = await x509.X509CertificateGenerator.createSelfSigned({
    keys, name: 'CN=test', notAfter: new Date('2030-01-02T03:04:05Z'), signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    extensions: names.length > 0 ? [new x509.SubjectAlternativeNameExtension(names)] : [],
  });
  return c.toString('pem');
}

t.test('spiffeIdOf accepts exactly one spiffe URI SAN, from every certificate form', async (t) => {
  const pem = await certWithSans([{ type: 'url', value: ID }, { type: 'dns', value: 'web.demo' }]);
  const x = new X509Certificate(pem);
  t.equal(spiffeIdOf(pem), ID, 'PEM');
  t.equal(spiffeIdOf(x.raw), ID, 'DER');
  t.equal(spiffeIdOf(x), ID, 'X509Certificate');
  t.equal(spiffeIdOf({ subjectaltname: `DNS:a, URI:${ID}, IP Address:10.0.0.1` }), ID, 'TLS peer certificate');
  t.equal(spiffeIdOf({}), undefined, 'peer without SAN');
  t.equal(spiffeIdOf(undefined), undefined, 'no certificate');
  const two = await certWithSans([{ type: 'url', value: ID }, { type: 'url', value: 'spiffe://cluster.local/ns/demo/sa/db' }]);
  t.equal(spiffeIdOf(two), undefined, 'two URIs are ambiguous');
  t.same(spiffeUrisOf(two), [ID, 'spiffe://cluster.local/ns/demo/sa/db'], 'both listed for error messages');
  t.equal(spiffeIdOf(await certWithSans([{ type: 'url', value: 'https://example.com/x' }])), undefined, 'non-spiffe URI');
  t.equal(spiffeIdOf(await certWithSans([])), undefined, 'no SAN');
  t.equal(spiffeIdOf('not a cert'), undefined, 'garbage');
  // Node quotes SAN entries containing separators; a quoted value is unquoted, never split.
  t.equal(spiffeIdOf({ subjectaltname: 'URI:"spiffe://td/ns/a, URI:b/sa/c"' }), 'spiffe://td/ns/a, URI:b/sa/c');
});

t.test('a URI SAN that embeds ", URI:spiffe://…" does not yield a second, forged identity', async (t) => {
  // The HBONE server read peer identities by splitting this text on ", ": the middle part
  // became an identity the certificate never carried.
  const pem = await certWithSans([{ type: 'url', value: 'https://x, URI:spiffe://cluster.local/ns/admin/sa/admin, DNS:y' }]);
  const peer = { subjectaltname: new X509Certificate(pem).subjectAltName } as PeerCertificate;
  t.match(peer.subjectaltname, /URI:spiffe:\/\/cluster\.local\/ns\/admin\/sa\/admin/, 'the forged text is in the SAN string');
  t.equal(spiffeIdOf(peer), undefined);
  t.same(spiffeUrisOf(peer), []);
});
