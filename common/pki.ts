/**
 * Workload identity primitives: ECDSA P-256 keys and PKCS#10 CSRs (made on the proxy, the key
 * never leaves it), SPIFFE ID parsing/extraction, and PEM helpers. Used by the proxies'
 * certificate manager and by the controller's CA.
 */
import { X509Certificate, type webcrypto } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
// Side effect first: @peculiar/x509's DI container (tsyringe) needs Reflect metadata at load.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { RondoError } from './errors.ts';

/** @peculiar/x509, configured with Node's WebCrypto; import it from here, not directly. */
export { x509 };
// Node's WebCrypto is complete (ECDSA, RSA, SHA-2), so no crypto polyfill is needed.
x509.cryptoProvider.set(globalThis.crypto);

/** Key generation parameters for workload and CA keys (ECDSA P-256, see docs/pki.md). */
export const EC_KEY_ALG: webcrypto.EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
/** Signature algorithm used with EC_KEY_ALG keys. */
export const EC_SIGN_ALG: webcrypto.EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };

/** A SPIFFE ID split into its Kubernetes parts. */
export interface SpiffeId {
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
}

// SPIFFE spec: trust domain is lowercase letters, digits, '.', '-', '_'; path segments
// add uppercase; '.' and '..' segments are forbidden.
const TRUST_DOMAIN_RE = /^[a-z0-9._-]{1,255}$/;
const SEGMENT_RE = /^[A-Za-z0-9._-]{1,253}$/;

function checkSegment(id: string, what: string, v: string): void {
  if (!SEGMENT_RE.test(v) || v === '.' || v === '..') {
    throw new RondoError('RONDO_E_SPIFFE_ID', `SPIFFE ID "${id}": ${what} "${v}" is not a valid path segment (letters, digits, '.', '-', '_')`);
  }
}

/** Parses `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`; throws RONDO_E_SPIFFE_ID naming the bad part. */
export function parseSpiffeId(id: string): SpiffeId {
  if (typeof id !== 'string' || !id.startsWith('spiffe://')) {
    throw new RondoError('RONDO_E_SPIFFE_ID', `SPIFFE ID "${String(id)}" must start with spiffe://`);
  }
  const rest = id.slice('spiffe://'.length);
  const parts = rest.split('/');
  const [td, nsKey, ns, saKey, sa] = parts;
  if (td === undefined || !TRUST_DOMAIN_RE.test(td)) {
    throw new RondoError('RONDO_E_SPIFFE_ID', `SPIFFE ID "${id}": trust domain "${td ?? ''}" must be lowercase letters, digits, '.', '-', '_'`);
  }
  if (parts.length !== 5 || nsKey !== 'ns' || saKey !== 'sa' || ns === undefined || sa === undefined) {
    throw new RondoError('RONDO_E_SPIFFE_ID', `SPIFFE ID "${id}" must have the form spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`);
  }
  checkSegment(id, 'namespace', ns);
  checkSegment(id, 'service account', sa);
  return { trustDomain: td, namespace: ns, serviceAccount: sa };
}

/** Builds the SPIFFE ID of a Kubernetes service account; validates every part. */
export function identityFor(trustDomain: string, namespace: string, serviceAccount: string): string {
  const id = `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
  parseSpiffeId(id);
  return id;
}

/** Parses Node's `subjectAltName` text ("URI:a, DNS:b", entries JSON-quoted when they contain separators). */
function sanEntries(text: string | undefined): { type: string; value: string }[] {
  if (text === undefined || text === '') return [];
  const out: { type: string; value: string }[] = [];
  const re = /([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/gy;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null && m[0] !== '') {
    const raw = m[2] ?? '';
    let value = raw;
    if (raw.startsWith('"')) {
      try { value = JSON.parse(raw) as string; } catch { value = raw; }
    }
    out.push({ type: m[1] ?? '', value });
  }
  return out;
}

/**
 * The SPIFFE ID of a certificate (PEM, DER, node X509Certificate or a TLS peer certificate):
 * the single URI SAN if there is exactly one and it starts with spiffe://, else undefined.
 */
export function spiffeIdOf(cert: string | Buffer | X509Certificate | PeerCertificate): string | undefined {
  let san: string | undefined;
  try {
    if (cert instanceof X509Certificate) san = cert.subjectAltName;
    else if (typeof cert === 'string' || Buffer.isBuffer(cert)) san = new X509Certificate(cert).subjectAltName;
    else san = cert.subjectaltname;
  } catch {
    return undefined;
  }
  const uris = sanEntries(san).filter((e) => e.type === 'URI');
  if (uris.length !== 1) return undefined;
  const v = uris[0]?.value;
  return v !== undefined && v.startsWith('spiffe://') ? v : undefined;
}

/** Expiry of the first certificate in a PEM text. */
export function certNotAfter(pem: string): Date {
  return new X509Certificate(pem).validToDate;
}

/** Every PEM block of the given label (default CERTIFICATE) in a text, each normalised with a trailing newline. */
export function splitPem(text: string, label = 'CERTIFICATE'): string[] {
  const re = new RegExp(`-----BEGIN ${label}-----[\\s\\S]*?-----END ${label}-----`, 'g');
  return (text.match(re) ?? []).map((b) => b.trim() + '\n');
}

/** DER bytes to PEM with the given label. */
export function derToPem(der: ArrayBuffer | Uint8Array, label: string): string {
  const b64 = Buffer.from(der instanceof Uint8Array ? der : new Uint8Array(der)).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** Generates an extractable ECDSA P-256 key pair and returns it with its PKCS#8 PEM. */
export async function generateKeyPair(): Promise<{ keys: webcrypto.CryptoKeyPair; keyPem: string }> {
  const keys = await crypto.subtle.generateKey(EC_KEY_ALG, true, ['sign', 'verify']);
  const pkcs8 = await crypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { keys, keyPem: derToPem(pkcs8, 'PRIVATE KEY') };
}

/** Generates a P-256 key and a PKCS#10 CSR whose only SAN is the given SPIFFE ID. */
export async function generateKeyAndCsr(identity: string): Promise<{ keyPem: string; csrPem: string }> {
  parseSpiffeId(identity);
  const { keys, keyPem } = await generateKeyPair();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys,
    signingAlgorithm: EC_SIGN_ALG,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: identity }], true)],
  });
  return { keyPem, csrPem: csr.toString('pem') + '\n' };
}
