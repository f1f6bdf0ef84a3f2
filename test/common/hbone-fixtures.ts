// Throwaway mesh PKI for HBONE tests, made with the openssl CLI so these tests do not
// depend on the CA module: a root and SPIFFE leaf certificates (ECDSA P-256).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import type { Workload } from '../../common/wire.ts';
import type { DataPlaneCert } from '../../node-agent/dataplane.ts';

export interface TestPki {
  caPem: string;
  /** Issues a leaf for `spiffe://cluster.local/ns/<ns>/sa/<sa>`; `ca` defaults to the mesh root. */
  leaf(ns: string, sa: string, ca?: { keyFile: string; certFile: string }): { identity: string; keyPem: string; certPem: string; ctx: tls.SecureContext };
  /** A second, unrelated CA (for "untrusted chain" tests). */
  otherCa(): { keyFile: string; certFile: string };
  cleanup(): void;
}

function ossl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function makeCa(dir: string, name: string): { keyFile: string; certFile: string } {
  const keyFile = join(dir, `${name}.key`), certFile = join(dir, `${name}.crt`);
  ossl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-out', certFile,
    '-days', '1', '-subj', `/O=rondo-test/CN=${name}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  return { keyFile, certFile };
}

/** Creates the PKI in a temporary directory. */
export function createTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'rondo-hbone-'));
  const root = makeCa(dir, 'root');
  const caPem = readFileSync(root.certFile, 'utf8');
  let n = 0;
  return {
    caPem,
    leaf(ns, sa, ca = root) {
      const id = `spiffe://cluster.local/ns/${ns}/sa/${sa}`;
      const base = join(dir, `leaf${n++}`);
      const ext = `${base}.ext`;
      writeFileSync(ext, `subjectAltName=URI:${id}\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n`);
      ossl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', '/O=rondo-test']);
      ossl(['x509', '-req', '-in', `${base}.csr`, '-CA', ca.certFile, '-CAkey', ca.keyFile, '-CAcreateserial', '-out', `${base}.crt`, '-days', '1', '-extfile', ext]);
      const keyPem = readFileSync(`${base}.key`, 'utf8');
      const certPem = readFileSync(`${base}.crt`, 'utf8');
      const ctx = tls.createSecureContext({ key: keyPem, cert: certPem, ca: caPem, minVersion: 'TLSv1.3' });
      return { identity: id, keyPem, certPem, ctx };
    },
    otherCa: () => makeCa(dir, `other${n++}`),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** A data-plane certificate for `demo/<sa>` from the test PKI, valid for an hour. */
export function dataPlaneCert(pki: TestPki, sa: string): DataPlaneCert {
  const l = pki.leaf('demo', sa);
  return { identity: l.identity, keyPem: l.keyPem, chain: [l.certPem], trustBundle: [pki.caPem], notAfter: new Date(Date.now() + 3600e3), secureContext: l.ctx };
}

/** An enrolled `demo/<name>-0` workload with one IP. */
export function demoWorkload(name: string, ip: string, node: string, identity: string): Workload {
  return {
    uid: `uid-${name}`, namespace: 'demo', name: `${name}-0`, workloadName: name, serviceAccount: name, identity,
    ips: [ip], node, labels: { app: name, version: 'v1' }, enrolled: true,
  };
}
