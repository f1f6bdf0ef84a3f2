/**
 * The mesh certificate authority: holds the root (generated on first start and persisted with
 * 0600 permissions) or a plugged-in intermediate (Istio layout), signs workload CSRs carrying
 * exactly the expected SPIFFE ID, issues the controller's own serving certificate, and
 * publishes the trust bundle (several roots while a root is rotated).
 */
import { X509Certificate, createPrivateKey, randomBytes, type KeyObject, type webcrypto } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as X509Lib from '@peculiar/x509';
import { RondoError, errorMessage } from '../common/errors.ts';
import { EC_KEY_ALG, EC_SIGN_ALG, generateKeyPair, splitPem, x509 } from '../common/pki.ts';
import { parseSpiffeId, spiffeIdFor } from '../common/spiffe.ts';

/** Options of {@link CertificateAuthority.loadOrCreate}. */
export interface CaOptions {
  /** Directory with root-key.pem/root-cert.pem (created if absent) or the plug-in CA files. */
  dir: string;
  trustDomain: string;
  /** Lifetime of workload certificates. */
  ttlSeconds: number;
  /** Clock in ms since the epoch (tests issue already-expired certificates with it). */
  now?: () => number;
}

type SignAlg = webcrypto.AlgorithmIdentifier | webcrypto.EcdsaParams;

const ROOT_TTL_MS = 10 * 365 * 24 * 3600 * 1000;
/** Back-dating of notBefore so a peer whose clock is a little behind accepts a fresh cert. */
const CLOCK_SKEW_MS = 60 * 1000;
const MAX_CSR_PEM_BYTES = 16 * 1024;
const SAN_OID = '2.5.29.17';
const ROOT_NAME = 'O=rondo, CN=Rondo Mesh Root CA';

function caError(message: string, cause?: unknown): RondoError {
  return new RondoError('RONDO_E_CA_INVALID', message, cause !== undefined ? { cause } : undefined);
}

function readPem(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw caError(`cannot read ${path}: ${errorMessage(e)}`, e);
  }
}

/** A certificate's subject on one line, for error messages (Node separates RDNs with newlines). */
function nameOf(c: X509Certificate): string {
  return `"${c.subject.replace(/\n/g, ', ')}"`;
}

function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = (b[0] ?? 0) & 0x7f; // positive INTEGER without a leading zero byte
  if (b[0] === 0) b[0] = 1;
  return b.toString('hex');
}

/** Imports a PEM private key (EC P-256/P-384 or RSA) as a WebCrypto signing key. */
function importSigningKey(keyObj: KeyObject): { key: webcrypto.CryptoKey; alg: SignAlg } {
  const type = keyObj.asymmetricKeyType;
  if (type === 'ec') {
    const curve = keyObj.asymmetricKeyDetails?.namedCurve;
    const namedCurve = curve === 'prime256v1' ? 'P-256' : curve === 'secp384r1' ? 'P-384' : undefined;
    if (namedCurve === undefined) throw caError(`CA key uses curve ${curve ?? '?'}; use P-256 or P-384`);
    const key = keyObj.toCryptoKey({ name: 'ECDSA', namedCurve }, false, ['sign']);
    return { key, alg: { name: 'ECDSA', hash: namedCurve === 'P-384' ? 'SHA-384' : 'SHA-256' } };
  }
  if (type === 'rsa') {
    const alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
    return { key: keyObj.toCryptoKey(alg, false, ['sign']), alg };
  }
  throw caError(`CA key type ${type ?? '?'} is not supported; use ECDSA P-256 or RSA`);
}

/** Signs workload and serving certificates for the mesh. */
export class CertificateAuthority {
  readonly trustDomain: string;
  readonly ttlSeconds: number;
  /** The signing certificate (the root, or the plugged-in intermediate). */
  readonly caCertPem: string;
  readonly #signingKey: webcrypto.CryptoKey;
  readonly #signingAlg: SignAlg;
  readonly #caCert: X509Lib.X509Certificate;
  readonly #caNotAfter: number;
  /** Certificates sent after the leaf: the intermediate chain (empty when signing with the root). */
  readonly #chainTail: string[];
  readonly #dir: string;
  /** The roots of root-cert.pem (or the self-made root): always first in the bundle. */
  readonly #roots: string[];
  #bundle: string[];
  readonly #now: () => number;

  private constructor(o: {
    opts: CaOptions; caCertPem: string; signingKey: webcrypto.CryptoKey; signingAlg: SignAlg; chainTail: string[]; roots: string[]; bundle: string[];
  }) {
    this.trustDomain = o.opts.trustDomain;
    this.ttlSeconds = o.opts.ttlSeconds;
    this.caCertPem = o.caCertPem;
    this.#signingKey = o.signingKey;
    this.#signingAlg = o.signingAlg;
    this.#caCert = new x509.X509Certificate(o.caCertPem);
    this.#caNotAfter = this.#caCert.notAfter.getTime();
    this.#chainTail = o.chainTail;
    this.#dir = o.opts.dir;
    this.#roots = o.roots;
    this.#bundle = o.bundle;
    this.#now = o.opts.now ?? Date.now;
  }

  /**
   * Loads the CA from `dir`: a plug-in intermediate (ca-cert.pem, ca-key.pem, cert-chain.pem,
   * root-cert.pem) if ca-cert.pem exists, else the self-made root (root-key.pem, root-cert.pem),
   * creating it on first start. Extra roots from trust-bundle-*.pem join the trust bundle.
   */
  static async loadOrCreate(opts: CaOptions): Promise<CertificateAuthority> {
    spiffeIdFor(opts.trustDomain, 'x', 'x'); // validates the trust domain
    if (!Number.isFinite(opts.ttlSeconds) || opts.ttlSeconds < 1) {
      throw caError(`certificate TTL ${opts.ttlSeconds}s is invalid; give at least 1 second`);
    }
    const dir = opts.dir;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const now = (opts.now ?? Date.now)();
    const p = (f: string): string => join(dir, f);

    let caCertPem: string;
    let keyPem: string;
    let chainTail: string[];
    let roots: string[];
    if (existsSync(p('ca-cert.pem'))) {
      // Plug-in intermediate: the workload chain is leaf + intermediates; roots go in the bundle.
      for (const f of ['ca-key.pem', 'root-cert.pem']) {
        if (!existsSync(p(f))) throw caError(`${p('ca-cert.pem')} exists but ${p(f)} is missing: a plug-in CA needs ca-cert.pem, ca-key.pem, cert-chain.pem and root-cert.pem`);
      }
      const caCerts = splitPem(readPem(p('ca-cert.pem')));
      if (caCerts[0] === undefined) throw caError(`${p('ca-cert.pem')} holds no PEM certificate`);
      caCertPem = caCerts[0];
      keyPem = readPem(p('ca-key.pem'));
      roots = splitPem(readPem(p('root-cert.pem')));
      if (roots.length === 0) throw caError(`${p('root-cert.pem')} holds no PEM certificate`);
      const chain = existsSync(p('cert-chain.pem')) ? splitPem(readPem(p('cert-chain.pem'))) : [caCertPem];
      const isSelfSigned = (pem: string): boolean => {
        const c = new X509Certificate(pem);
        return c.subject === c.issuer && c.verify(c.publicKey);
      };
      chainTail = chain.filter((c) => !isSelfSigned(c));
      if (chainTail[0] === undefined || new X509Certificate(chainTail[0]).fingerprint256 !== new X509Certificate(caCertPem).fingerprint256) {
        chainTail.unshift(caCertPem);
      }
      verifyChain(chainTail, roots, now);
    } else {
      const keyPath = p('root-key.pem');
      const certPath = p('root-cert.pem');
      const haveKey = existsSync(keyPath);
      const haveCert = existsSync(certPath);
      if (haveKey !== haveCert) {
        throw caError(`${haveKey ? certPath : keyPath} is missing but ${haveKey ? keyPath : certPath} exists: restore both files or remove both to create a new root (every proxy must then get the new bundle)`);
      }
      if (!haveKey) {
        const created = await createRoot(now);
        // 'wx': two controllers racing on one directory must not overwrite each other's key.
        try {
          writeFileSync(keyPath, created.keyPem, { mode: 0o600, flag: 'wx' });
          chmodSync(keyPath, 0o600); // the umask may have cleared bits, never added: make it exact
          writeFileSync(certPath, created.certPem, { mode: 0o644, flag: 'wx' });
        } catch (e) {
          throw caError(`cannot create the mesh root in ${dir}: ${errorMessage(e)} (is another controller using the same --ca-dir?)`, e);
        }
      }
      const mode = statSync(keyPath).mode & 0o777;
      if ((mode & 0o077) !== 0) {
        throw caError(`${keyPath} has mode ${mode.toString(8)}: the root key must not be readable by group or others (chmod 600)`);
      }
      keyPem = readPem(keyPath);
      const certs = splitPem(readPem(certPath));
      if (certs[0] === undefined) throw caError(`${certPath} holds no PEM certificate`);
      caCertPem = certs[0];
      roots = [caCertPem];
      chainTail = [];
    }

    let keyObj: KeyObject;
    try {
      keyObj = createPrivateKey(keyPem);
    } catch (e) {
      throw caError(`CA private key in ${dir} cannot be parsed: ${errorMessage(e)}`, e);
    }
    const caX = new X509Certificate(caCertPem);
    if (!caX.checkPrivateKey(keyObj)) throw caError(`CA key in ${dir} does not belong to its certificate ${nameOf(caX)}`);
    if (!caX.ca) throw caError(`CA certificate ${nameOf(caX)} in ${dir} is not a CA (basicConstraints CA:false)`);
    if (caX.validToDate.getTime() <= now) throw caError(`CA certificate ${nameOf(caX)} in ${dir} expired at ${caX.validTo}; rotate the root`);
    const { key, alg } = importSigningKey(keyObj);

    const bundle = readTrustBundle(dir, roots);
    return new CertificateAuthority({ opts, caCertPem, signingKey: key, signingAlg: alg, chainTail, roots, bundle });
  }

  /** PEM roots every proxy must trust (the active root first, then roots kept for rotation). */
  get trustBundle(): string[] {
    return [...this.#bundle];
  }

  /**
   * Re-reads the trust-bundle-*.pem files (a root being added before it signs, or an old one
   * dropped after rotation) without a restart. Throws RONDO_E_CA_INVALID naming the file
   * when one does not hold CA certificates; the bundle in force then stays.
   */
  reloadTrustBundle(): void {
    this.#bundle = readTrustBundle(this.#dir, this.#roots);
  }

  /**
   * Signs a PKCS#10 CSR whose only SAN is `expectedIdentity`; returns the chain, leaf first.
   * Throws RONDO_E_CSR_MALFORMED (not a CSR, bad signature, weak key) or RONDO_E_CSR_IDENTITY
   * (SAN missing, different, extra names, foreign trust domain). The caller (push server)
   * has already checked the requester may hold `expectedIdentity`.
   */
  async signCsr(csrPem: string, expectedIdentity: string): Promise<string[]> {
    let expected;
    try {
      expected = parseSpiffeId(expectedIdentity);
    } catch (e) {
      throw new RondoError('RONDO_E_CSR_IDENTITY', `expected identity is invalid: ${errorMessage(e)}`, { cause: e });
    }
    if (expected.trustDomain !== this.trustDomain) {
      throw new RondoError('RONDO_E_CSR_IDENTITY', `identity ${expectedIdentity} is in trust domain "${expected.trustDomain}"; this CA signs only "${this.trustDomain}"`);
    }
    const csr = await parseAndVerifyCsr(csrPem);
    checkCsrIdentity(csr, expectedIdentity);
    const now = this.#now();
    const notAfter = Math.min(now + this.ttlSeconds * 1000, this.#caNotAfter);
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: '',
      issuer: this.#caCert.subject,
      notBefore: new Date(now - CLOCK_SKEW_MS),
      notAfter: new Date(notAfter),
      publicKey: csr.publicKey,
      signingKey: this.#signingKey,
      signingAlgorithm: this.#signingAlg,
      extensions: await this.#leafExtensions(csr.publicKey, [{ type: 'url', value: expectedIdentity }], true),
    });
    return [cert.toString('pem') + '\n', ...this.#chainTail];
  }

  /** Issues a serving certificate with a fresh key (for the controller's own TLS endpoint). */
  async issueServing(o: { ips: string[]; dnsNames: string[]; ttlSeconds?: number }): Promise<{ keyPem: string; chain: string[] }> {
    const names: X509Lib.JsonGeneralName[] = [
      ...o.dnsNames.map((value) => ({ type: 'dns' as const, value })),
      ...o.ips.map((value) => ({ type: 'ip' as const, value })),
    ];
    if (names.length === 0) throw new RondoError('RONDO_E_INVALID', 'a serving certificate needs at least one IP or DNS name');
    const { keys, keyPem } = await generateKeyPair();
    const now = this.#now();
    const ttlMs = (o.ttlSeconds ?? 365 * 24 * 3600) * 1000;
    const cn = o.dnsNames[0] ?? o.ips[0] ?? 'rondo-controller';
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: `O=rondo, CN=${cn}`,
      issuer: this.#caCert.subject,
      notBefore: new Date(now - CLOCK_SKEW_MS),
      notAfter: new Date(Math.min(now + ttlMs, this.#caNotAfter)),
      publicKey: keys.publicKey,
      signingKey: this.#signingKey,
      signingAlgorithm: this.#signingAlg,
      extensions: await this.#leafExtensions(keys.publicKey, names, false),
    });
    return { keyPem, chain: [cert.toString('pem') + '\n', ...this.#chainTail] };
  }

  async #leafExtensions(publicKey: X509Lib.PublicKeyType, names: X509Lib.JsonGeneralName[], sanCritical: boolean): Promise<X509Lib.Extension[]> {
    const caSki = this.#caCert.getExtension(x509.SubjectKeyIdentifierExtension);
    return [
      new x509.BasicConstraintsExtension(false, undefined, true),
      // digitalSignature only: EC keys do not encipher (keyEncipherment is an RSA-kex usage).
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      // An empty subject makes the SAN the only name, so RFC 5280 wants it critical.
      new x509.SubjectAlternativeNameExtension(names, sanCritical),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
      caSki !== null
        ? new x509.AuthorityKeyIdentifierExtension(caSki.keyId)
        : await x509.AuthorityKeyIdentifierExtension.create(this.#caCert.publicKey),
    ];
  }
}

/** The active roots, then every CA certificate of `dir`/trust-bundle-*.pem, deduplicated. */
function readTrustBundle(dir: string, roots: string[]): string[] {
  const bundle: string[] = [];
  const seen = new Set<string>();
  const add = (pem: string, from: string): void => {
    let c: X509Certificate;
    try {
      c = new X509Certificate(pem);
    } catch (e) {
      throw caError(`${from} holds a certificate that cannot be parsed: ${errorMessage(e)}`, e);
    }
    if (!c.ca) throw caError(`${from} holds ${nameOf(c)}, which is not a CA certificate: a trust bundle file may only hold roots`);
    if (seen.has(c.fingerprint256)) return;
    seen.add(c.fingerprint256);
    bundle.push(pem);
  };
  for (const pem of roots) add(pem, join(dir, 'root-cert.pem'));
  for (const f of readdirSync(dir).filter((n) => /^trust-bundle-.*\.pem$/.test(n)).sort()) {
    const path = join(dir, f);
    const pems = splitPem(readPem(path));
    if (pems.length === 0) throw caError(`${path} holds no PEM certificate`);
    for (const pem of pems) add(pem, path);
  }
  return bundle;
}

async function createRoot(now: number): Promise<{ keyPem: string; certPem: string }> {
  const { keys, keyPem } = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: ROOT_NAME,
    notBefore: new Date(now - CLOCK_SKEW_MS),
    notAfter: new Date(now + ROOT_TTL_MS),
    keys,
    signingAlgorithm: EC_SIGN_ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { keyPem, certPem: cert.toString('pem') + '\n' };
}

function verifyChain(chain: string[], roots: string[], now: number): void {
  const certs = chain.map((c) => new X509Certificate(c));
  const anchors = roots.map((r) => new X509Certificate(r));
  for (let i = 0; i < certs.length; i++) {
    const c = certs[i]!;
    if (c.validToDate.getTime() <= now) throw caError(`CA chain certificate ${nameOf(c)} expired at ${c.validTo}`);
    const next = certs[i + 1];
    const issuers = next !== undefined ? [next] : anchors;
    if (!issuers.some((iss) => c.checkIssued(iss) && c.verify(iss.publicKey))) {
      throw caError(`CA chain certificate ${nameOf(c)} is not signed by ${next !== undefined ? nameOf(next) : 'any certificate in root-cert.pem'}: check cert-chain.pem order (intermediate first) and root-cert.pem`);
    }
  }
}

async function parseAndVerifyCsr(csrPem: string): Promise<X509Lib.Pkcs10CertificateRequest> {
  if (typeof csrPem !== 'string' || csrPem.length > MAX_CSR_PEM_BYTES) {
    throw new RondoError('RONDO_E_CSR_MALFORMED', `CSR must be a PEM string of at most ${MAX_CSR_PEM_BYTES} bytes`);
  }
  const blocks = splitPem(csrPem, 'CERTIFICATE REQUEST');
  if (blocks.length !== 1 || blocks[0] === undefined) {
    throw new RondoError('RONDO_E_CSR_MALFORMED', `CSR must hold exactly one "-----BEGIN CERTIFICATE REQUEST-----" PEM block, found ${blocks.length}`);
  }
  let csr: X509Lib.Pkcs10CertificateRequest;
  let ok: boolean;
  try {
    csr = new x509.Pkcs10CertificateRequest(blocks[0]);
    ok = await csr.verify();
  } catch (e) {
    throw new RondoError('RONDO_E_CSR_MALFORMED', `CSR cannot be parsed as PKCS#10: ${errorMessage(e)}`, { cause: e });
  }
  if (!ok) throw new RondoError('RONDO_E_CSR_MALFORMED', 'CSR signature does not verify with its own public key (corrupted, or not signed by the key it carries)');
  const alg = csr.publicKey.algorithm as { name?: string; namedCurve?: string; modulusLength?: number };
  const strong = alg.name === 'ECDSA'
    ? alg.namedCurve === EC_KEY_ALG.namedCurve || alg.namedCurve === 'P-384'
    : (alg.name === 'RSASSA-PKCS1-v1_5' || alg.name === 'RSA-PSS') && (alg.modulusLength ?? 0) >= 2048;
  if (!strong) {
    throw new RondoError('RONDO_E_CSR_MALFORMED', `CSR key ${alg.name ?? '?'} ${alg.namedCurve ?? alg.modulusLength ?? ''} is not accepted; use ECDSA P-256 (or RSA >= 2048)`);
  }
  return csr;
}

function checkCsrIdentity(csr: X509Lib.Pkcs10CertificateRequest, expectedIdentity: string): void {
  let names: { type: string; value: string }[];
  try {
    const exts = csr.getExtensions(SAN_OID);
    if (exts.length !== 1) {
      throw new RondoError('RONDO_E_CSR_IDENTITY', `CSR must carry exactly one subjectAltName extension with the URI ${expectedIdentity}, found ${exts.length}`);
    }
    const san = new x509.SubjectAlternativeNameExtension(exts[0]!.rawData);
    names = san.names.items.map((n) => ({ type: n.type, value: n.value }));
  } catch (e) {
    if (e instanceof RondoError) throw e;
    throw new RondoError('RONDO_E_CSR_MALFORMED', `CSR subjectAltName cannot be parsed: ${errorMessage(e)}`, { cause: e });
  }
  const got = names.map((n) => `${n.type === 'url' ? 'URI' : n.type}:${n.value}`).join(', ');
  if (names.length !== 1 || names[0]?.type !== 'url' || names[0].value !== expectedIdentity) {
    throw new RondoError('RONDO_E_CSR_IDENTITY', `CSR subjectAltName is [${got}]; it must be exactly URI:${expectedIdentity}`);
  }
}
