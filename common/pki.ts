/**
 * Workload identity primitives: ECDSA P-256 keys and PKCS#10 CSRs (made on the proxy, the key
 * never leaves it) and PEM helpers. Used by the proxies' certificate manager and by the
 * controller's CA. SPIFFE IDs themselves live in spiffe.ts.
 */
import { X509Certificate, type webcrypto } from 'node:crypto';
// Side effect first: @peculiar/x509's DI container (tsyringe) needs Reflect metadata at load.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { parseSpiffeId } from './spiffe.ts';

/** @peculiar/x509, configured with Node's WebCrypto; import it from here, not directly. */
export { x509 };
// Node's WebCrypto is complete (ECDSA, RSA, SHA-2), so no crypto polyfill is needed.
x509.cryptoProvider.set(globalThis.crypto);

/** Key generation parameters for workload and CA keys (ECDSA P-256, see docs/pki.md). */
export const EC_KEY_ALG: webcrypto.EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
/** Signature algorithm used with EC_KEY_ALG keys. */
export const EC_SIGN_ALG: webcrypto.EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };

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
