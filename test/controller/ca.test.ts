import t from 'tap';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, statSync, writeFileSync, readFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { CertificateAuthority } from '../../controller/ca.ts';
import { generateKeyAndCsr, x509, EC_KEY_ALG, EC_SIGN_ALG } from '../../common/pki.ts';
import { spiffeIdOf } from '../../common/spiffe.ts';
import type { RondoError } from '../../common/errors.ts';

const TD = 'cluster.local';
const ID = `spiffe://${TD}/ns/demo/sa/web`;

function tmp(t: Tap): string {
  const d = mkdtempSync(join(tmpdir(), 'rondo-ca-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}
/** The part of a tap test the helpers need. */
interface Tap { teardown(fn: () => void): void }

function opensslVerify(dir: string, bundle: string[], chain: string[]): string {
  writeFileSync(join(dir, 'v-bundle.pem'), bundle.join(''));
  writeFileSync(join(dir, 'v-leaf.pem'), chain[0] ?? '');
  writeFileSync(join(dir, 'v-untrusted.pem'), chain.slice(1).join('') || (bundle[0] ?? ''));
  return execFileSync('openssl', ['verify', '-purpose', 'sslclient', '-CAfile', join(dir, 'v-bundle.pem'),
    '-untrusted', join(dir, 'v-untrusted.pem'), join(dir, 'v-leaf.pem')], { encoding: 'utf8' });
}

async function code(p: Promise<unknown>): Promise<string> {
  try { await p; return 'no error'; } catch (e) { return `${(e as RondoError).code}: ${(e as Error).message}`; }
}

t.test('creates a persistent root (0600 key) on first start and reuses it', async (t) => {
  const dir = tmp(t);
  const ca1 = await CertificateAuthority.loadOrCreate({ dir, trustDomain: TD, ttlSeconds: 3600 });
  t.equal(statSync(join(dir, 'root-key.pem')).mode & 0o777, 0o600);
  const root = new X509Certificate(readFileSync(join(dir, 'root-cert.pem')));
  t.ok(root.ca, 'root is a CA');
  t.ok(root.validToDate.getTime() > Date.now() + 9 * 365 * 86400e3, 'root lasts ~10 years');
  const ca2 = await CertificateAuthority.loadOrCreate({ dir, trustDomain: TD, ttlSeconds: 3600 });
  t.same(ca2.trustBundle, ca1.trustBundle, 'same root after restart');
  // A leaf from the first instance verifies against the second one's bundle.
  const { csrPem } = await generateKeyAndCsr(ID);
  const chain = await ca1.signCsr(csrPem, ID);
  t.match(opensslVerify(dir, ca2.trustBundle, chain), /OK/);
});

t.test('refuses a group-readable root key and a half-present root', async (t) => {
  const dir = tmp(t);
  await CertificateAuthority.loadOrCreate({ dir, trustDomain: TD, ttlSeconds: 3600 });
  chmodSync(join(dir, 'root-key.pem'), 0o644);
  t.match(await code(CertificateAuthority.loadOrCreate({ dir, trustDomain: TD, ttlSeconds: 3600 })), /RONDO_E_CA_INVALID.*chmod 600/);
  rmSync(join(dir, 'root-key.pem'));
  t.match(await code(CertificateAuthority.loadOrCreate({ dir, trustDomain: TD, ttlSeconds: 3600 })), /RONDO_E_CA_INVALID.*root-key.pem is missing/);
  t.match(await code(CertificateAuthority.loadOrCreate({ dir: tmp(t), trustDomain: 'Bad_TD!', ttlSeconds: 3600 })), /RONDO_E_SPIFFE_ID/);
  t.match(await code(CertificateAuthority.loadOrCreate({ dir: tmp(t), trustDomain: TD, ttlSeconds: 0 })), /RONDO_E_CA_INVALID.*TTL/);
});

t.test('signs a CSR: SPIFFE URI SAN only, TTL, usages; openssl verifies against the bundle', async (t) => {
  const dir = tmp(t);
  const ca = await CertificateAuthority.loadOrCreate({ dir, trustDomain: TD, ttlSeconds: 90 });
  const { csrPem } = await generateKeyAndCsr(ID);
  const chain = await ca.signCsr(csrPem, ID);
  t.equal(chain.length, 1, 'root-signed: leaf only');
  const leaf = new X509Certificate(chain[0]!);
  t.equal(leaf.subjectAltName, `URI:${ID}`, 'SAN is exactly the SPIFFE URI');
  t.equal(spiffeIdOf(chain[0]), ID);
  t.equal(leaf.ca, false);
  const life = leaf.validToDate.getTime() - Date.now();
  t.ok(life > 80e3 && life <= 91e3, `lifetime ~90s (${life}ms)`);
  t.ok(leaf.validFromDate.getTime() < Date.now() - 30e3, 'notBefore back-dated for clock skew');
  const text = execFileSync('openssl', ['x509', '-noout', '-text'], { input: chain[0]!, encoding: 'utf8' });
  t.match(text, /TLS Web Server Authentication, TLS Web Client Authentication/);
  t.match(text, /Key Usage: critical\s+Digital Signature\n/);
  t.match(text, /Authority Key Identifier/);
  t.match(opensslVerify(dir, ca.trustBundle, chain), /OK/);
  // Two leaves never share a serial.
  const again = new X509Certificate((await ca.signCsr(csrPem, ID))[0]!);
  t.not(again.serialNumber, leaf.serialNumber);
});

t.test('refuses foreign identities and malformed CSRs with a reason', async (t) => {
  const ca = await CertificateAuthority.loadOrCreate({ dir: tmp(t), trustDomain: TD, ttlSeconds: 3600 });
  const { csrPem } = await generateKeyAndCsr(ID);
  // A node agent asking for a pod of another node: the push server expects a different identity.
  t.match(await code(ca.signCsr(csrPem, `spiffe://${TD}/ns/demo/sa/db`)), /^RONDO_E_CSR_IDENTITY: .*URI:spiffe:\/\/cluster.local\/ns\/demo\/sa\/web.*sa\/db/);
  const foreign = await generateKeyAndCsr('spiffe://evil.example/ns/demo/sa/web');
  t.match(await code(ca.signCsr(foreign.csrPem, 'spiffe://evil.example/ns/demo/sa/web')), /^RONDO_E_CSR_IDENTITY: .*trust domain "evil.example"/);
  t.match(await code(ca.signCsr(csrPem, 'not-a-spiffe-id')), /^RONDO_E_CSR_IDENTITY/);
  t.match(await code(ca.signCsr('hello', ID)), /^RONDO_E_CSR_MALFORMED: .*exactly one/);
  t.match(await code(ca.signCsr(csrPem + csrPem, ID)), /^RONDO_E_CSR_MALFORMED: .*found 2/);
  t.match(await code(ca.signCsr('x'.repeat(20000), ID)), /^RONDO_E_CSR_MALFORMED/);
  const garbage = '-----BEGIN CERTIFICATE REQUEST-----\nAAAAAAAA\n-----END CERTIFICATE REQUEST-----\n';
  t.match(await code(ca.signCsr(garbage, ID)), /^RONDO_E_CSR_MALFORMED: CSR cannot be parsed/);
  // Tamper one byte of the signed body: the self-signature no longer verifies.
  const der = Buffer.from(csrPem.replace(/-----[^-]+-----/g, '').replace(/\s/g, ''), 'base64');
  const i = der.indexOf(Buffer.from('spiffe://'));
  der[i + 9] = 'x'.charCodeAt(0);
  const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
  t.match(await code(ca.signCsr(tampered, ID)), /^RONDO_E_CSR_MALFORMED: CSR signature does not verify/);
  // Extra SANs (a DNS name next to the URI) and a CSR without SAN are refused.
  const keys = await crypto.subtle.generateKey(EC_KEY_ALG, true, ['sign', 'verify']);
  const extra = await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: EC_SIGN_ALG,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: ID }, { type: 'dns', value: 'evil.com' }])] });
  t.match(await code(ca.signCsr(extra.toString('pem'), ID)), /^RONDO_E_CSR_IDENTITY: CSR subjectAltName is \[URI:.*, dns:evil.com\]/);
  const none = await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: EC_SIGN_ALG, name: 'CN=web' });
  t.match(await code(ca.signCsr(none.toString('pem'), ID)), /^RONDO_E_CSR_IDENTITY: .*found 0/);
  // Weak keys are refused.
  const rsa = await crypto.subtle.generateKey({ name: 'RSASSA-PKCS1-v1_5', modulusLength: 1024, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }, true, ['sign', 'verify']);
  const weak = await x509.Pkcs10CertificateRequestGenerator.create({ keys: rsa, signingAlgorithm: { name: 'RSASSA-PKCS1-v1_5' },
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: ID }])] });
  t.match(await code(ca.signCsr(weak.toString('pem'), ID)), /^RONDO_E_CSR_MALFORMED: CSR key RSASSA-PKCS1-v1_5 1024/);
});

t.test('trust-bundle-*.pem roots join the bundle (root rotation)', async (t) => {
  const oldDir = tmp(t);
  const old = await CertificateAuthority.loadOrCreate({ dir: oldDir, trustDomain: TD, ttlSeconds: 3600 });
  const dir = tmp(t);
  writeFileSync(join(dir, 'trust-bundle-old.pem'), old.trustBundle.join(''));
  const ca = await CertificateAuthority.loadOrCreate({ dir, trustDomain: TD, ttlSeconds: 3600 });
  t.equal(ca.trustBundle.length, 2);
  t.equal(ca.trustBundle[0], readFileSync(join(dir, 'root-cert.pem'), 'utf8'), 'active root first');
  // A leaf of the old root still verifies against the new bundle: no outage during rotation.
  const { csrPem } = await generateKeyAndCsr(ID);
  t.match(opensslVerify(dir, ca.trustBundle, await old.signCsr(csrPem, ID)), /OK/);
});

/** Istio-style plug-in CA directory made with openssl: root (kept out of the dir) -> intermediate. */
function pluginDir(t: Tap, alg: 'ec' | 'rsa'): { dir: string; o: (args: string[]) => string } {
  const dir = tmp(t);
  const o = (args: string[]): string => execFileSync('openssl', args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const key = alg === 'ec' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'] : ['-newkey', 'rsa:2048'];
  o(['req', '-x509', ...key, '-nodes', '-keyout', 'rk.pem', '-out', 'root-cert.pem',
    '-subj', '/O=corp/CN=Corp Root', '-days', '30', '-addext', 'basicConstraints=critical,CA:true', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  o(['req', ...key, '-nodes', '-keyout', 'ca-key.pem', '-out', 'ca.csr', '-subj', '/O=corp/CN=Mesh Intermediate']);
  writeFileSync(join(dir, 'ext.cnf'), 'basicConstraints=critical,CA:true,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n');
  o(['x509', '-req', '-in', 'ca.csr', '-CA', 'root-cert.pem', '-CAkey', 'rk.pem', '-CAcreateserial', '-out', 'ca-cert.pem', '-days', '20', '-extfile', 'ext.cnf']);
  writeFileSync(join(dir, 'cert-chain.pem'), readFileSync(join(dir, 'ca-cert.pem'), 'utf8') + readFileSync(join(dir, 'root-cert.pem'), 'utf8'));
  rmSync(join(dir, 'rk.pem'));
  return { dir, o };
}

for (const alg of ['ec', 'rsa'] as const) {
  t.test(`plug-in intermediate CA (${alg}): leaf chain includes the intermediate`, async (t) => {
    const { dir, o } = pluginDir(t, alg);
    const ca = await CertificateAuthority.loadOrCreate({ dir, trustDomain: TD, ttlSeconds: 3600 });
    t.equal(ca.trustBundle.length, 1);
    t.equal(ca.trustBundle[0], readFileSync(join(dir, 'root-cert.pem'), 'utf8').trim() + '\n');
    const { csrPem } = await generateKeyAndCsr(ID);
    const chain = await ca.signCsr(csrPem, ID);
    t.equal(chain.length, 2, 'leaf + intermediate (the root stays in the bundle)');
    t.match(new X509Certificate(chain[1]!).subject, /Mesh Intermediate/);
    t.match(opensslVerify(dir, ca.trustBundle, chain), /OK/);
    // A key that does not match the intermediate is refused at start-up.
    o(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'ca-key.pem']);
    t.match(await code(CertificateAuthority.loadOrCreate({ dir, trustDomain: TD, ttlSeconds: 3600 })), /RONDO_E_CA_INVALID.*does not belong/);
  });
}

t.test('plug-in CA: a missing file or a chain that does not reach root-cert.pem is refused', async (t) => {
  const { dir } = pluginDir(t, 'ec');
  const other = await CertificateAuthority.loadOrCreate({ dir: tmp(t), trustDomain: TD, ttlSeconds: 3600 });
  const rootPem = readFileSync(join(dir, 'root-cert.pem'), 'utf8');
  writeFileSync(join(dir, 'root-cert.pem'), other.trustBundle[0]!);
  t.match(await code(CertificateAuthority.loadOrCreate({ dir, trustDomain: TD, ttlSeconds: 3600 })), /RONDO_E_CA_INVALID: CA chain certificate "O=corp, CN=Mesh Intermediate" is not signed by any certificate in root-cert.pem/);
  writeFileSync(join(dir, 'root-cert.pem'), rootPem);
  rmSync(join(dir, 'ca-key.pem'));
  t.match(await code(CertificateAuthority.loadOrCreate({ dir, trustDomain: TD, ttlSeconds: 3600 })), /RONDO_E_CA_INVALID: .*ca-key.pem is missing/);
});

t.test('serving certificate carries the listen IP and verifies as a TLS server', async (t) => {
  const ca = await CertificateAuthority.loadOrCreate({ dir: tmp(t), trustDomain: TD, ttlSeconds: 3600 });
  const s = await ca.issueServing({ ips: ['127.0.0.1'], dnsNames: ['rondo-controller'] });
  const srv = tls.createServer({ key: s.keyPem, cert: s.chain.join(''), minVersion: 'TLSv1.3' }, (c) => c.end('hi'));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => srv.close());
  const got = await new Promise<string>((resolve, reject) => {
    // Default checkServerIdentity: the IP SAN must match 127.0.0.1.
    const c = tls.connect({ host: '127.0.0.1', port: (srv.address() as AddressInfo).port, ca: ca.trustBundle }, () => {
      let d = '';
      c.on('data', (b: Buffer) => (d += b.toString())).on('end', () => resolve(d));
    });
    c.on('error', reject);
  });
  t.equal(got, 'hi');
  t.match(await code(ca.issueServing({ ips: [], dnsNames: [] })), /RONDO_E_INVALID/);
});

interface Issued { key: string; cert: string }
async function issue(ca: CertificateAuthority, id: string): Promise<Issued> {
  const { keyPem, csrPem } = await generateKeyAndCsr(id);
  return { key: keyPem, cert: (await ca.signCsr(csrPem, id)).join('') };
}

/**
 * mTLS server like the HBONE listener: bundle as CA, client cert required. With
 * rejectUnauthorized Node closes a refused handshake without telling the server, so the
 * reason is read from a second attempt with rejectUnauthorized: false (authorizationError).
 */
async function mtlsAttempt(t: Tap, server: Issued, bundle: string[], client: Issued, clientCa: string[], reject = true): Promise<{ accepted: boolean; clientGot: string; peerId?: string; authorizationError?: string }> {
  let peerId: string | undefined;
  let authorizationError: string | undefined;
  let accepted = false;
  const srv = tls.createServer({ key: server.key, cert: server.cert, ca: bundle, requestCert: true, rejectUnauthorized: reject, minVersion: 'TLSv1.3' }, (s) => {
    accepted = true;
    peerId = spiffeIdOf(s.getPeerCertificate());
    if (s.authorizationError !== null) authorizationError = String(s.authorizationError);
    s.end('ok');
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => srv.close());
  let clientGot = '';
  await new Promise<void>((resolve) => {
    const c = tls.connect({ host: '127.0.0.1', port: (srv.address() as AddressInfo).port, key: client.key, cert: client.cert, ca: clientCa,
      minVersion: 'TLSv1.3', checkServerIdentity: () => undefined });
    c.on('data', (b: Buffer) => (clientGot += b.toString()));
    c.on('error', () => resolve());
    c.on('close', () => resolve());
  });
  return { accepted, clientGot, ...(peerId !== undefined ? { peerId } : {}), ...(authorizationError !== undefined ? { authorizationError } : {}) };
}

t.test('mTLS with real sockets: valid client accepted, expired and foreign-CA clients refused', async (t) => {
  const dir = tmp(t);
  const ca = await CertificateAuthority.loadOrCreate({ dir, trustDomain: TD, ttlSeconds: 3600 });
  // Same root, clock two hours back: the leaf expired an hour ago.
  const past = await CertificateAuthority.loadOrCreate({ dir, trustDomain: TD, ttlSeconds: 3600, now: () => Date.now() - 2 * 3600e3 });
  const foreign = await CertificateAuthority.loadOrCreate({ dir: tmp(t), trustDomain: TD, ttlSeconds: 3600 });
  const server = await issue(ca, `spiffe://${TD}/ns/demo/sa/db`);
  const good = await mtlsAttempt(t, server, ca.trustBundle, await issue(ca, ID), ca.trustBundle);
  t.same(good, { accepted: true, clientGot: 'ok', peerId: ID }, 'valid client connects and its SPIFFE ID is seen');
  const expiredClient = await issue(past, ID);
  t.same(await mtlsAttempt(t, server, ca.trustBundle, expiredClient, ca.trustBundle), { accepted: false, clientGot: '' }, 'expired client refused');
  t.equal((await mtlsAttempt(t, server, ca.trustBundle, expiredClient, ca.trustBundle, false)).authorizationError, 'CERT_HAS_EXPIRED');
  const alienClient = await issue(foreign, ID);
  t.same(await mtlsAttempt(t, server, ca.trustBundle, alienClient, ca.trustBundle), { accepted: false, clientGot: '' }, 'foreign-CA client refused');
  t.match((await mtlsAttempt(t, server, ca.trustBundle, alienClient, ca.trustBundle, false)).authorizationError, /UNABLE_TO_GET_ISSUER_CERT|UNABLE_TO_VERIFY_LEAF_SIGNATURE/);
});
