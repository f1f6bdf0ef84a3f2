/**
 * SPIFFE identities of Kubernetes workloads, `spiffe://<trust-domain>/ns/<namespace>/sa/<sa>`:
 * the one place that formats, parses and reads them out of certificates, so the controller
 * (model, CA, CSR checks), the proxies (certificates, HBONE peer checks) and the
 * authorization engine agree on one rule for what an identity is.
 */
import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { RondoError } from './errors.ts';

/** The URI scheme of a SPIFFE ID, with its `//`. */
export const SPIFFE_SCHEME = 'spiffe://';

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

/**
 * Formats the SPIFFE ID of a service account without validating it: for callers that
 * validate the result elsewhere (the model's schema check, the CA). spiffeIdFor validates.
 */
export function formatSpiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `${SPIFFE_SCHEME}${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

/** Builds the SPIFFE ID of a Kubernetes service account; throws RONDO_E_SPIFFE_ID naming a bad part. */
export function spiffeIdFor(trustDomain: string, namespace: string, serviceAccount: string): string {
  const id = formatSpiffeId(trustDomain, namespace, serviceAccount);
  parseSpiffeId(id);
  return id;
}

/** Parses `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`; throws RONDO_E_SPIFFE_ID naming the bad part. */
export function parseSpiffeId(id: string): SpiffeId {
  const r = check(id);
  if (typeof r === 'string') throw new RondoError('RONDO_E_SPIFFE_ID', r);
  return r;
}

/** parseSpiffeId without the throw: undefined when `id` is not a workload SPIFFE ID. */
export function tryParseSpiffeId(id: string): SpiffeId | undefined {
  const r = check(id);
  return typeof r === 'string' ? undefined : r;
}

/** True when `id` is a well-formed workload SPIFFE ID. */
export function isSpiffeId(id: string): boolean {
  return typeof check(id) !== 'string';
}

function check(id: unknown): SpiffeId | string {
  if (typeof id !== 'string' || !id.startsWith(SPIFFE_SCHEME)) return `SPIFFE ID "${String(id)}" must start with ${SPIFFE_SCHEME}`;
  const parts = id.slice(SPIFFE_SCHEME.length).split('/');
  const [td, nsKey, ns, saKey, sa] = parts;
  if (td === undefined || !TRUST_DOMAIN_RE.test(td)) {
    return `SPIFFE ID "${id}": trust domain "${td ?? ''}" must be lowercase letters, digits, '.', '-', '_'`;
  }
  if (parts.length !== 5 || nsKey !== 'ns' || saKey !== 'sa' || ns === undefined || sa === undefined) {
    return `SPIFFE ID "${id}" must have the form ${SPIFFE_SCHEME}<trust-domain>/ns/<namespace>/sa/<service-account>`;
  }
  const bad = badSegment(id, 'namespace', ns) ?? badSegment(id, 'service account', sa);
  if (bad !== undefined) return bad;
  return { trustDomain: td, namespace: ns, serviceAccount: sa };
}

function badSegment(id: string, what: string, v: string): string | undefined {
  if (SEGMENT_RE.test(v) && v !== '.' && v !== '..') return undefined;
  return `SPIFFE ID "${id}": ${what} "${v}" is not a valid path segment (letters, digits, '.', '-', '_')`;
}

/**
 * An identity in Istio's principal form, without the scheme (`cluster.local/ns/a/sa/b`), as
 * AuthorizationPolicy `principals` are written; a value already in that form is returned as is.
 */
export function principalOf(idOrPrincipal: string): string {
  return idOrPrincipal.startsWith(SPIFFE_SCHEME) ? idOrPrincipal.slice(SPIFFE_SCHEME.length) : idOrPrincipal;
}

/**
 * Parses Node's `subjectAltName` text ("URI:a, DNS:b"). Node JSON-quotes an entry that
 * contains a separator, so a URI holding ", URI:spiffe://…" stays one entry: splitting on
 * ", " would read a second, forged identity out of it.
 */
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

/** A certificate as Node hands them out: PEM, DER, X509Certificate, or a TLS peer certificate. */
export type CertificateInput = string | Buffer | X509Certificate | Pick<PeerCertificate, 'subjectaltname'>;

function subjectAltName(cert: CertificateInput | undefined): string | undefined {
  if (cert === undefined) return undefined;
  try {
    if (cert instanceof X509Certificate) return cert.subjectAltName;
    if (typeof cert === 'string' || Buffer.isBuffer(cert)) return new X509Certificate(cert).subjectAltName;
    return cert.subjectaltname;
  } catch {
    return undefined;
  }
}

/**
 * The SPIFFE ID of a certificate: its URI SAN if it has exactly one and that is a
 * `spiffe://` URI (an SVID carries exactly one), else undefined (none, several, unparsable).
 */
export function spiffeIdOf(cert: CertificateInput | undefined): string | undefined {
  const uris = sanEntries(subjectAltName(cert)).filter((e) => e.type === 'URI');
  if (uris.length !== 1) return undefined;
  const v = uris[0]?.value;
  return v !== undefined && v.startsWith(SPIFFE_SCHEME) ? v : undefined;
}

/** Every `spiffe://` URI SAN of a certificate, for error messages about what a peer presented. */
export function spiffeUrisOf(cert: CertificateInput | undefined): string[] {
  return sanEntries(subjectAltName(cert)).filter((e) => e.type === 'URI' && e.value.startsWith(SPIFFE_SCHEME)).map((e) => e.value);
}
