/**
 * Full TLS 1.3 mutual-auth handshakes per second on 127.0.0.1, RSA-2048 vs ECDSA P-256
 * (whole chain of each key type: root + server leaf + client leaf, SPIFFE SANs like the mesh).
 * No resumption: every connection is a fresh handshake. The server runs in a worker thread so
 * its CPU is measured apart from the client's. Rounds alternate key types so drift in the
 * machine's load hits both alike.
 *
 *   node bench/tls-handshake.ts [--seconds 2] [--rounds 3] [--concurrency 8] [--ecdh-curve X25519]
 *
 * Without --ecdh-curve, Node's default key exchange is used (OpenSSL 3.5: X25519MLKEM768).
 *
 * Prints a table on stderr and the JSON result on stdout.
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { once } from 'node:events';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import type { webcrypto } from 'node:crypto';
import { derToPem, x509 } from '../common/pki.ts';
import { formatSpiffeId } from '../common/spiffe.ts';

type KeyKind = 'rsa-2048' | 'ecdsa-p256';
interface Creds { ca: string; serverKey: string; serverCert: string; clientKey: string; clientCert: string }
interface ServerMsg { port?: number; cpuUs?: number; handshakes?: number }

const ALGS: Record<KeyKind, { gen: webcrypto.RsaHashedKeyGenParams | webcrypto.EcKeyGenParams; sign: webcrypto.AlgorithmIdentifier | webcrypto.EcdsaParams }> = {
  'rsa-2048': { gen: { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }, sign: { name: 'RSASSA-PKCS1-v1_5' } },
  'ecdsa-p256': { gen: { name: 'ECDSA', namedCurve: 'P-256' }, sign: { name: 'ECDSA', hash: 'SHA-256' } },
};

async function makeCreds(kind: KeyKind): Promise<Creds> {
  const a = ALGS[kind];
  const gen = async (): Promise<webcrypto.CryptoKeyPair> => crypto.subtle.generateKey(a.gen, true, ['sign', 'verify']);
  const pem = async (k: webcrypto.CryptoKey): Promise<string> => derToPem(await crypto.subtle.exportKey('pkcs8', k), 'PRIVATE KEY');
  const rootKeys = await gen();
  const root = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=bench ${kind} root`, keys: rootKeys, signingAlgorithm: a.sign, notAfter: new Date(Date.now() + 86400e3),
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)],
  });
  const leaf = async (sa: string): Promise<{ key: string; cert: string }> => {
    const keys = await gen();
    const c = await x509.X509CertificateGenerator.create({
      subject: '', issuer: root.subject, publicKey: keys.publicKey, signingKey: rootKeys.privateKey, signingAlgorithm: a.sign,
      notAfter: new Date(Date.now() + 86400e3),
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | (kind === 'rsa-2048' ? x509.KeyUsageFlags.keyEncipherment : 0), true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: formatSpiffeId('cluster.local', 'bench', sa) }], true),
      ],
    });
    return { key: await pem(keys.privateKey), cert: c.toString('pem') };
  };
  const s = await leaf('server');
  const c = await leaf('client');
  return { ca: root.toString('pem'), serverKey: s.key, serverCert: s.cert, clientKey: c.key, clientCert: c.cert };
}

/** Worker side: one mTLS server per key kind; answers each handshake with one byte. */
function serve({ creds, ecdhCurve }: { creds: Record<KeyKind, Creds>; ecdhCurve?: string }): void {
  const port = parentPort!;
  const servers = new Map<KeyKind, tls.Server>();
  let handshakes = 0;
  for (const kind of Object.keys(creds) as KeyKind[]) {
    const c = creds[kind];
    const srv = tls.createServer({ key: c.serverKey, cert: c.serverCert, ca: c.ca, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3', ...(ecdhCurve !== undefined ? { ecdhCurve } : {}) }, (s) => {
      handshakes++;
      s.on('error', () => undefined);
      s.end('k');
    });
    srv.on('tlsClientError', () => undefined);
    servers.set(kind, srv);
  }
  let start = process.threadCpuUsage();
  port.on('message', (m: { cmd: 'listen' | 'reset' | 'stats' | 'close' }) => {
    if (m.cmd === 'listen') {
      const ports: Record<string, number> = {};
      let left = servers.size;
      for (const [kind, srv] of servers) {
        srv.listen(0, '127.0.0.1', () => {
          ports[kind] = (srv.address() as AddressInfo).port;
          if (--left === 0) port.postMessage({ ports });
        });
      }
    } else if (m.cmd === 'reset') {
      handshakes = 0;
      start = process.threadCpuUsage();
      port.postMessage({});
    } else if (m.cmd === 'stats') {
      const u = process.threadCpuUsage(start);
      port.postMessage({ cpuUs: u.user + u.system, handshakes } satisfies ServerMsg);
    } else {
      for (const srv of servers.values()) srv.close();
      port.close();
    }
  });
}

/** Key-exchange group seen on the first handshake, for the report. */
let group: { name?: string } | undefined;

/** Built once per key kind, as the cert manager does: parsing PEMs per connection would dominate. */
function clientContext(c: Creds, ecdhCurve: string | undefined): tls.SecureContext {
  return tls.createSecureContext({ key: c.clientKey, cert: c.clientCert, ca: c.ca, minVersion: 'TLSv1.3', ...(ecdhCurve !== undefined ? { ecdhCurve } : {}) });
}

function handshake(port: number, ctx: tls.SecureContext): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, secureContext: ctx, checkServerIdentity: () => undefined });
    s.once('data', () => {
      group ??= s.getEphemeralKeyInfo() as { name?: string };
      if (s.isSessionReused()) reject(new Error('session was resumed; the bench must measure full handshakes'));
      else resolve();
      s.destroy();
    });
    s.once('error', reject);
  });
}

async function round(worker: Worker, port: number, c: tls.SecureContext, ms: number, concurrency: number): Promise<{ hs: number; perSec: number; clientCpuUsPerHs: number; serverCpuUsPerHs: number }> {
  worker.postMessage({ cmd: 'reset' });
  await once(worker, 'message');
  const t0 = performance.now();
  const cpu0 = process.threadCpuUsage();
  let done = 0;
  const loop = async (): Promise<void> => {
    while (performance.now() - t0 < ms) {
      await handshake(port, c);
      done++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  const elapsed = performance.now() - t0;
  const cpu = process.threadCpuUsage(cpu0);
  worker.postMessage({ cmd: 'stats' });
  const [stats] = (await once(worker, 'message')) as [ServerMsg];
  return {
    hs: done,
    perSec: (done * 1000) / elapsed,
    clientCpuUsPerHs: (cpu.user + cpu.system) / done,
    serverCpuUsPerHs: (stats.cpuUs ?? 0) / Math.max(1, stats.handshakes ?? done),
  };
}

/** Mean ms to generate one key pair: paid by the proxy per pod identity and per renewal. */
async function keygenMs(kind: KeyKind, n: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await crypto.subtle.generateKey(ALGS[kind].gen, true, ['sign', 'verify']);
  return Math.round(((performance.now() - t0) / n) * 100) / 100;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '2' }, rounds: { type: 'string', default: '3' }, concurrency: { type: 'string', default: '8' }, 'ecdh-curve': { type: 'string' } } });
  const ecdhCurve = values['ecdh-curve'];
  const ms = Number(values.seconds) * 1000;
  const rounds = Number(values.rounds);
  const concurrency = Number(values.concurrency);
  if (!(ms > 0) || !(rounds >= 1) || !(concurrency >= 1)) throw new Error('--seconds, --rounds and --concurrency must be positive numbers');
  const kinds: KeyKind[] = ['rsa-2048', 'ecdsa-p256'];
  const creds = { 'rsa-2048': await makeCreds('rsa-2048'), 'ecdsa-p256': await makeCreds('ecdsa-p256') };
  const ctx = { 'rsa-2048': clientContext(creds['rsa-2048'], ecdhCurve), 'ecdsa-p256': clientContext(creds['ecdsa-p256'], ecdhCurve) };
  const worker = new Worker(new URL(import.meta.url), { workerData: { creds, ...(ecdhCurve !== undefined ? { ecdhCurve } : {}) } });
  worker.postMessage({ cmd: 'listen' });
  const [{ ports }] = (await once(worker, 'message')) as [{ ports: Record<KeyKind, number> }];
  const results: Record<KeyKind, { perSec: number[]; clientCpuUsPerHs: number[]; serverCpuUsPerHs: number[]; handshakes: number }> = {
    'rsa-2048': { perSec: [], clientCpuUsPerHs: [], serverCpuUsPerHs: [], handshakes: 0 },
    'ecdsa-p256': { perSec: [], clientCpuUsPerHs: [], serverCpuUsPerHs: [], handshakes: 0 },
  };
  // Warm-up so JIT and OpenSSL tables do not count against the first key type.
  for (const k of kinds) await round(worker, ports[k], ctx[k], 300, concurrency);
  for (let r = 0; r < rounds; r++) {
    for (const k of r % 2 === 0 ? kinds : [...kinds].reverse()) {
      const x = await round(worker, ports[k], ctx[k], ms, concurrency);
      results[k].perSec.push(x.perSec);
      results[k].clientCpuUsPerHs.push(x.clientCpuUsPerHs);
      results[k].serverCpuUsPerHs.push(x.serverCpuUsPerHs);
      results[k].handshakes += x.hs;
    }
  }
  worker.postMessage({ cmd: 'close' });
  await once(worker, 'exit');
  const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] ?? 0; };
  const summary = kinds.map((k) => ({
    key: k,
    handshakesPerSec: Math.round(median(results[k].perSec)),
    rounds: results[k].perSec.map((x) => Math.round(x)),
    serverCpuUsPerHandshake: Math.round(median(results[k].serverCpuUsPerHs)),
    clientCpuUsPerHandshake: Math.round(median(results[k].clientCpuUsPerHs)),
    handshakes: results[k].handshakes,
  }));
  const keygen = { 'rsa-2048': await keygenMs('rsa-2048', 5), 'ecdsa-p256': await keygenMs('ecdsa-p256', 50) };
  const certBytes = Object.fromEntries(kinds.map((k) => [k, Buffer.byteLength(creds[k].serverCert)]));
  const [rsa, ec] = summary;
  const out = {
    bench: 'tls-handshake', node: process.version, openssl: process.versions.openssl, tls: 'TLSv1.3 mutual, no resumption', keyExchange: group?.name,
    secondsPerRound: ms / 1000, rounds, concurrency, results: summary, keygenMs: keygen, leafCertPemBytes: certBytes,
    ecdsaSpeedup: rsa !== undefined && ec !== undefined ? Math.round((ec.handshakesPerSec / rsa.handshakesPerSec) * 100) / 100 : undefined,
  };
  const pad = (s: string | number, n: number): string => String(s).padStart(n);
  process.stderr.write(`key exchange: ${group?.name ?? '?'}\n`);
  process.stderr.write(`${'key'.padEnd(12)}${pad('hs/s (median)', 15)}${pad('server µs/hs', 14)}${pad('client µs/hs', 14)}  rounds\n`);
  for (const s of summary) {
    process.stderr.write(`${s.key.padEnd(12)}${pad(s.handshakesPerSec, 15)}${pad(s.serverCpuUsPerHandshake, 14)}${pad(s.clientCpuUsPerHandshake, 14)}  ${s.rounds.join(' ')}\n`);
  }
  process.stderr.write(`key generation: rsa-2048 ${keygen['rsa-2048']} ms, ecdsa-p256 ${keygen['ecdsa-p256']} ms\n`);
  process.stdout.write(JSON.stringify(out, null, 2) + '\n');
}

if (isMainThread) {
  main().catch((e: unknown) => {
    process.stderr.write(`tls-handshake bench failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    process.exitCode = 1;
  });
} else {
  serve(workerData as { creds: Record<KeyKind, Creds>; ecdhCurve?: string });
}
