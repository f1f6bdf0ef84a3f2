import t from 'tap';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { certNotAfter, derToPem, generateKeyAndCsr, splitPem, x509 } from '../../common/pki.ts';

const ID = 'spiffe://cluster.local/ns/demo/sa/web';

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

t.test('certNotAfter reads the expiry of a PEM certificate', async (t) => {
  const pem = await certWithSans([{ type: 'url', value: ID }]);
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
