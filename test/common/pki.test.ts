import t from 'tap';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import type { PeerCertificate } from 'node:tls';
import {
  certNotAfter, derToPem, generateKeyAndCsr, identityFor, parseSpiffeId, spiffeIdOf, splitPem, x509,
} from '../../common/pki.ts';

const ID = 'spiffe://cluster.local/ns/demo/sa/web';

t.test('parseSpiffeId splits a valid ID and names the bad part otherwise', (t) => {
  t.same(parseSpiffeId(ID), { trustDomain: 'cluster.local', namespace: 'demo', serviceAccount: 'web' });
  t.equal(identityFor('cluster.local', 'demo', 'web'), ID);
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
  for (const [id, re] of bad) t.throws(() => parseSpiffeId(id), { code: 'RONDO_E_SPIFFE_ID', message: re }, id);
  t.throws(() => identityFor('cluster.local', 'a/b', 'web'), { code: 'RONDO_E_SPIFFE_ID' });
  t.end();
});

t.test('generateKeyAndCsr: P-256 key, self-signed CSR with only the SPIFFE URI SAN', async (t) => {
  const { keyPem, csrPem } = await generateKeyAndCsr(ID);
  const key = createPrivateKey(keyPem);
  t.equal(key.asymmetricKeyType, 'ec');
  t.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  const text = execFileSync('openssl', ['req', '-noout', '-text', '-verify'], { input: csrPem, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
  t.match(text, /URI:spiffe:\/\/cluster\.local\/ns\/demo\/sa\/web\s*\n/);
  t.notMatch(text, /DNS:|IP Address:/);
  const csr = new x509.Pkcs10CertificateRequest(csrPem);
  t.ok(await csr.verify(), 'CSR self-signature verifies');
  // Fresh key every time: a key never comes from anywhere else.
  t.not((await generateKeyAndCsr(ID)).keyPem, keyPem);
  await t.rejects(generateKeyAndCsr('spiffe://cluster.local/ns/demo'), { code: 'RONDO_E_SPIFFE_ID' });
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
  t.equal(spiffeIdOf({ subjectaltname: `DNS:a, URI:${ID}` } as PeerCertificate), ID, 'TLS peer certificate');
  t.equal(spiffeIdOf({} as PeerCertificate), undefined, 'peer without SAN');
  t.equal(spiffeIdOf(await certWithSans([{ type: 'url', value: ID }, { type: 'url', value: 'spiffe://cluster.local/ns/demo/sa/db' }])), undefined, 'two URIs are ambiguous');
  t.equal(spiffeIdOf(await certWithSans([{ type: 'url', value: 'https://example.com/x' }])), undefined, 'non-spiffe URI');
  t.equal(spiffeIdOf(await certWithSans([])), undefined, 'no SAN');
  t.equal(spiffeIdOf('not a cert'), undefined, 'garbage');
  // Node quotes SAN entries containing separators; a quoted value is unquoted, never split.
  t.equal(spiffeIdOf({ subjectaltname: 'URI:"spiffe://td/ns/a, URI:b/sa/c"' } as PeerCertificate), 'spiffe://td/ns/a, URI:b/sa/c');
  t.equal(certNotAfter(pem).toISOString(), '2030-01-02T03:04:05.000Z');
});

t.test('PEM helpers', async (t) => {
  const a = await certWithSans([{ type: 'url', value: ID }]);
  const b = await certWithSans([]);
  const blocks = splitPem(`junk\n${a}\n\n${b}trailer`);
  t.equal(blocks.length, 2);
  t.equal(blocks[0], a.trim() + '\n');
  t.same(splitPem('nothing here'), []);
  const der = new X509Certificate(a).raw;
  t.equal(derToPem(der, 'CERTIFICATE'), a.trim() + '\n', 'DER round-trips to the same PEM (64-column lines)');
});
