import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { Registry } from 'prom-client';
import { CertManager, type CertTimers, type WorkloadCert } from '../../common/cert-manager.ts';
import { createLogger } from '../../common/log.ts';
import { generateKeyAndCsr } from '../../common/pki.ts';
import { spiffeIdOf } from '../../common/spiffe.ts';
import { CertificateAuthority } from '../../controller/ca.ts';

const TD = 'cluster.local';
const WEB = `spiffe://${TD}/ns/demo/sa/web`;
const DB = `spiffe://${TD}/ns/demo/sa/db`;
const log = createLogger('test', { write: () => true });

/** A manual clock + timer queue: advance() fires due timers in time order, never sleeps. */
class FakeTime implements CertTimers {
  // Whole seconds: X.509 times have second precision, so half-lives come out exact.
  now = Math.floor(Date.now() / 1000) * 1000;
  #seq = 0;
  readonly timers = new Map<number, { at: number; fn: () => void; ms: number }>();
  set(fn: () => void, ms: number): unknown {
    const id = ++this.#seq;
    this.timers.set(id, { at: this.now + ms, fn, ms });
    return id;
  }
  clear(h: unknown): void { this.timers.delete(h as number); }
  /** Delays of the timers currently armed. */
  delays(): number[] { return [...this.timers.values()].map((x) => x.ms); }
  advance(ms: number): void {
    const end = this.now + ms;
    for (;;) {
      const next = [...this.timers.entries()].sort((a, b) => a[1].at - b[1].at)[0];
      if (next === undefined || next[1].at > end) break;
      this.timers.delete(next[0]);
      this.now = next[1].at;
      next[1].fn();
    }
    this.now = end;
  }
}

interface Fixture { ca: CertificateAuthority; time: FakeTime; cm: CertManager; signs: string[]; fail: { n: number }; registry: Registry }

async function fixture(t: { teardown(fn: () => void): void }, ttlSeconds = 100): Promise<Fixture> {
  const dir = mkdtempSync(join(tmpdir(), 'rondo-cm-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const time = new FakeTime();
  const ca = await CertificateAuthority.loadOrCreate({ dir, trustDomain: TD, ttlSeconds, now: () => time.now });
  const signs: string[] = [];
  const fail = { n: 0 };
  const registry = new Registry();
  const cm = new CertManager({
    log, registry, setTimer: time, now: () => time.now, random: () => 0.5, retryInitialMs: 1000, retryMaxMs: 8000,
    sign: async (identity, csr) => {
      signs.push(identity);
      if (fail.n > 0) { fail.n--; throw new Error('controller unreachable'); }
      return ca.signCsr(csr, identity);
    },
  });
  cm.setTrustBundle(ca.trustBundle);
  t.teardown(() => cm.close());
  return { ca, time, cm, signs, fail, registry };
}

/** An mTLS server presenting `server`'s context; reports the client's SPIFFE ID and leaf serial per connection. */
async function mtlsServer(t: { teardown(fn: () => void): void }, getCtx: () => tls.SecureContext) {
  const seen: { id?: string; serial: string }[] = [];
  const sockets = new Set<tls.TLSSocket>();
  const srv = tls.createServer({ requestCert: true, rejectUnauthorized: true, SNICallback: (_n, cb) => cb(null, getCtx()), secureContext: getCtx() }, (s) => {
    sockets.add(s);
    const peer = s.getPeerCertificate();
    seen.push({ ...(spiffeIdOf(peer) !== undefined ? { id: spiffeIdOf(peer)! } : {}), serial: peer.serialNumber });
    s.on('data', (b: Buffer) => s.write(b)); // echo
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => { for (const s of sockets) s.destroy(); srv.close(); });
  return { port: (srv.address() as AddressInfo).port, seen };
}

async function connect(port: number, cert: WorkloadCert): Promise<tls.TLSSocket> {
  const c = tls.connect({ host: '127.0.0.1', port, secureContext: cert.secureContext, servername: 'hbone', checkServerIdentity: () => undefined });
  await once(c, 'secureConnect');
  return c;
}

async function echo(c: tls.TLSSocket, msg: string): Promise<string> {
  c.write(msg);
  const [b] = (await once(c, 'data')) as [Buffer];
  return b.toString();
}

t.test('ensure issues a cert whose context does mutual TLS 1.3 with the peer identity visible', async (t) => {
  const f = await fixture(t);
  const web = await f.cm.ensure(WEB);
  const db = await f.cm.ensure(DB);
  t.equal(web.identity, WEB);
  t.equal(spiffeIdOf(web.chain[0]), WEB);
  t.equal(web.notAfter.getTime(), new X509Certificate(web.chain[0]!).validToDate.getTime());
  t.equal(f.cm.get(WEB), web);
  const srv = await mtlsServer(t, () => db.secureContext);
  const c = await connect(srv.port, web);
  t.teardown(() => c.destroy());
  t.equal(c.getProtocol(), 'TLSv1.3');
  t.equal(spiffeIdOf(c.getPeerCertificate()), DB, 'client sees the server SPIFFE ID');
  t.equal(await echo(c, 'ping'), 'ping');
  t.equal(srv.seen[0]?.id, WEB, 'server sees the client SPIFFE ID');
  t.match(await f.registry.metrics(), new RegExp(`rondo_cert_expiry_timestamp_seconds\\{identity="${WEB.replace(/[/.]/g, '\\$&')}"\\} ${web.notAfter.getTime() / 1000}`));
  t.match(await f.registry.metrics(), /rondo_cert_renewals_total\{result="success"\} 2/);
});

t.test('concurrent ensure() for one identity sends one CSR', async (t) => {
  const f = await fixture(t);
  const [a, b, c] = await Promise.all([f.cm.ensure(WEB), f.cm.ensure(WEB), f.cm.ensure(WEB)]);
  t.same(f.signs, [WEB]);
  t.equal(a, b);
  t.equal(b, c);
  t.equal(await f.cm.ensure(WEB), a, 'cached afterwards');
  t.same(f.signs, [WEB]);
});

t.test('renews at half-life: new connections get the new cert, open ones keep working', async (t) => {
  const f = await fixture(t, 100);
  const db = await f.cm.ensure(DB);
  const first = await f.cm.ensure(WEB);
  // random() = 0.5 means zero jitter: exactly half of the 100 s life.
  t.same(f.time.delays(), [50_000, 50_000], 'renewal timers at half-life');
  const srv = await mtlsServer(t, () => db.secureContext);
  const open = await connect(srv.port, f.cm.get(WEB)!);
  t.teardown(() => open.destroy());
  t.equal(await echo(open, 'before'), 'before');

  const rotated: string[] = [];
  const both = new Promise<void>((resolve) => f.cm.on('rotated', (id) => { rotated.push(id); if (rotated.length === 2) resolve(); }));
  f.time.advance(49_000);
  t.same(f.signs, [DB, WEB], 'nothing renewed before half-life');
  f.time.advance(1_000);
  await both;
  t.same(rotated.sort(), [DB, WEB].sort());
  const second = f.cm.get(WEB)!;
  t.not(second, first);
  t.not(second.keyPem, first.keyPem, 'renewal uses a fresh key');
  t.equal(await echo(open, 'after'), 'after', 'the open connection is untouched');
  const fresh = await connect(srv.port, second);
  t.teardown(() => fresh.destroy());
  await echo(fresh, 'x');
  t.equal(srv.seen.length, 2);
  t.not(srv.seen[1]!.serial, srv.seen[0]!.serial, 'the new connection presented the renewed cert');
  t.equal(srv.seen[1]!.serial, new X509Certificate(second.chain[0]!).serialNumber);
});

t.test('jitter spreads renewal by +/-10 % of the half-life', async (t) => {
  for (const [r, expected] of [[0, 45_000], [0.999999, 55_000]] as const) {
    const f = await fixture(t, 100);
    const cm = new CertManager({ log, setTimer: f.time, now: () => f.time.now, random: () => r, sign: (id, csr) => f.ca.signCsr(csr, id) });
    cm.setTrustBundle(f.ca.trustBundle);
    t.teardown(() => cm.close());
    f.time.timers.clear();
    await cm.ensure(WEB);
    t.ok(Math.abs(f.time.delays()[0]! - expected) < 5, `random ${r} -> ${f.time.delays()[0]}ms`);
  }
});

t.test('failed renewals retry with exponential backoff, keep serving the old cert, and are counted', async (t) => {
  const f = await fixture(t, 100);
  const first = await f.cm.ensure(WEB);
  f.fail.n = 3;
  const delays: number[] = [];
  for (let i = 0; i < 3; i++) {
    const failed = new Promise<void>((resolve) => {
      const check = (): void => { if (f.time.timers.size === 1 && f.signs.length === i + 2) resolve(); else setImmediate(check); };
      check();
    });
    f.time.advance(f.time.delays()[0]!);
    await failed;
    delays.push(f.time.delays()[0]!);
    t.equal(f.cm.get(WEB), first, `old cert still served after failure ${i + 1}`);
  }
  // random() = 0.5 -> 3/4 of a base doubling from 1 s (backoff.ts): 0.75 s, 1.5 s, 3 s.
  t.same(delays, [750, 1500, 3000]);
  const ok = once(f.cm, 'rotated');
  f.time.advance(3000);
  await ok;
  t.not(f.cm.get(WEB), first, 'recovered');
  t.same(f.time.delays(), [(first.notAfter.getTime() - f.time.now) / 2 + (f.cm.get(WEB)!.notAfter.getTime() - first.notAfter.getTime()) / 2], 'back to half-life scheduling');
  const m = await f.registry.metrics();
  t.match(m, /rondo_cert_renewals_total\{result="failure"\} 3/);
  t.match(m, /rondo_cert_renewals_total\{result="success"\} 2/);
});

t.test('retry delay is capped by retryMaxMs and by half the remaining life', async (t) => {
  const f = await fixture(t, 1000);
  await f.cm.ensure(WEB);
  f.fail.n = 100;
  let last = 0;
  for (let i = 0; i < 8; i++) {
    const n = f.signs.length;
    f.time.advance(f.time.delays()[0]!);
    await new Promise<void>((resolve) => { const c = (): void => { if (f.signs.length === n + 1 && f.time.timers.size === 1) resolve(); else setImmediate(c); }; c(); });
    last = f.time.delays()[0]!;
    t.ok(last <= 8000, `delay ${last} <= retryMaxMs`);
  }
  t.equal(last, 6000, 'reached the cap (3/4 of retryMaxMs at random 0.5)');
  // Close to expiry the delay shrinks to half the remaining life, so retries continue.
  f.time.advance(f.cm.get(WEB)!.notAfter.getTime() - f.time.now - 6000);
  await new Promise<void>((resolve) => { const c = (): void => { if (f.time.timers.size === 1 && f.time.delays()[0]! < 6000) resolve(); else setImmediate(c); }; c(); });
  t.ok(f.time.delays()[0]! <= 4000, `near expiry the retry comes within half the remaining life (${f.time.delays()[0]}ms)`);
});

t.test('first issuance failure rejects with a clear error and a later ensure() retries', async (t) => {
  const f = await fixture(t);
  f.fail.n = 1;
  await t.rejects(f.cm.ensure(WEB), { code: 'RONDO_E_CERT_SIGN', message: /signing the certificate for .*web failed: controller unreachable/ });
  t.equal(f.cm.get(WEB), undefined);
  t.equal(f.time.timers.size, 0, 'nothing scheduled for a cert never issued');
  t.equal((await f.cm.ensure(WEB)).identity, WEB);
});

t.test('a wrong certificate from the controller is rejected', async (t) => {
  const f = await fixture(t);
  const bad = new CertManager({ log, setTimer: f.time, now: () => f.time.now, sign: async (_id, _csr) => {
    const other = await f.cm.ensure(DB);
    return other.chain;
  } });
  bad.setTrustBundle(f.ca.trustBundle);
  t.teardown(() => bad.close());
  await t.rejects(bad.ensure(WEB), { code: 'RONDO_E_CERT_INVALID', message: /for spiffe:\/\/cluster.local\/ns\/demo\/sa\/db, expected .*web/ });
  const empty = new CertManager({ log, setTimer: f.time, sign: () => Promise.resolve([]) });
  empty.setTrustBundle(f.ca.trustBundle);
  await t.rejects(empty.ensure(WEB), { code: 'RONDO_E_CERT_INVALID', message: /no certificate chain/ });
  // Right identity, but for somebody else's key (a CSR replayed by a confused controller).
  const stolenChain = await f.ca.signCsr((await generateKeyAndCsr(WEB)).csrPem, WEB);
  const wrongKey = new CertManager({ log, setTimer: f.time, sign: () => Promise.resolve(stolenChain) });
  wrongKey.setTrustBundle(f.ca.trustBundle);
  await t.rejects(wrongKey.ensure(WEB), { code: 'RONDO_E_CERT_INVALID', message: /does not match the key/ });
  const noBundle = new CertManager({ log, setTimer: f.time, sign: (id, csr) => f.ca.signCsr(csr, id) });
  await t.rejects(noBundle.ensure(WEB), { code: 'RONDO_E_NO_TRUST_BUNDLE' });
  await t.rejects(f.cm.ensure('spiffe://cluster.local/ns/demo'), { code: 'RONDO_E_SPIFFE_ID' });
  t.throws(() => f.cm.setTrustBundle([]), { code: 'RONDO_E_INVALID' });
  const before = f.cm.get(DB);
  t.throws(() => f.cm.setTrustBundle([...f.ca.trustBundle, 'garbage']), { code: 'RONDO_E_INVALID', message: /entry 1 is not a PEM certificate/ });
  t.throws(() => f.cm.setTrustBundle([f.cm.get(DB)!.chain[0]!]), { code: 'RONDO_E_INVALID', message: /entry 0 .* is not a CA/ });
  t.equal(f.cm.get(DB), before, 'a bad bundle leaves the old one in force');
});

t.test('retain() forgets pods that left: no cert, no timer, no metric', async (t) => {
  const f = await fixture(t);
  await f.cm.ensure(WEB);
  await f.cm.ensure(DB);
  t.equal(f.time.timers.size, 2);
  f.cm.retain(new Set([DB]));
  t.equal(f.cm.get(WEB), undefined);
  t.ok(f.cm.get(DB));
  t.same(f.cm.identities(), [DB]);
  t.equal(f.time.timers.size, 1, 'renewal timer of the departed pod cancelled');
  t.notMatch(await f.registry.metrics(), /sa\/web/);
  // Forgotten while its CSR is in flight: the caller still gets it, the manager keeps nothing.
  const p = f.cm.ensure(WEB);
  f.cm.retain(new Set([DB]));
  t.equal((await p).identity, WEB);
  t.equal(f.cm.get(WEB), undefined);
  t.equal(f.time.timers.size, 1);
});

t.test('a new trust bundle rebuilds every context once; the same bundle is a no-op', async (t) => {
  const f = await fixture(t);
  const web = await f.cm.ensure(WEB);
  const rotated: string[] = [];
  f.cm.on('rotated', (id) => rotated.push(id));
  f.cm.setTrustBundle([...f.ca.trustBundle]);
  t.equal(f.cm.get(WEB), web, 'unchanged bundle: same context');
  const other = await fixture(t);
  f.cm.setTrustBundle([...f.ca.trustBundle, ...other.ca.trustBundle]);
  t.same(rotated, [WEB]);
  const now = f.cm.get(WEB)!;
  t.not(now.secureContext, web.secureContext);
  t.equal(now.keyPem, web.keyPem, 'same key and cert');
  t.same(now.trustBundle, [...f.ca.trustBundle, ...other.ca.trustBundle], 'carries the bundle it was built with');
  t.same(web.trustBundle, f.ca.trustBundle, 'the old object keeps its own bundle');
  // The rebuilt context trusts the added root: a peer of the other CA is accepted.
  const peer = await other.cm.ensure(DB);
  const srv = await mtlsServer(t, () => peer.secureContext);
  const c = await connect(srv.port, now).catch((e: unknown) => e);
  t.type(c, tls.TLSSocket, 'client with the old+new bundle trusts the new root');
  if (c instanceof tls.TLSSocket) c.destroy();
});

t.test('close() is idempotent, cancels timers and refuses new work', async (t) => {
  const f = await fixture(t);
  await f.cm.ensure(WEB);
  f.cm.close();
  f.cm.close();
  t.equal(f.time.timers.size, 0);
  t.equal(f.cm.get(WEB), undefined);
  await t.rejects(f.cm.ensure(WEB), { code: 'RONDO_E_CLOSED' });
});

t.test('a context can be picked per accepted socket (HBONE inbound: cert by original destination)', async (t) => {
  const f = await fixture(t);
  const web = await f.cm.ensure(WEB);
  const db = await f.cm.ensure(DB);
  const seen: string[] = [];
  // The agent accepts plain TCP, looks up the target pod, then starts TLS with that pod's context.
  const srv = net.createServer((raw) => {
    const s = new tls.TLSSocket(raw, { isServer: true, secureContext: f.cm.get(DB)!.secureContext, requestCert: true, rejectUnauthorized: true });
    s.on('secure', () => { seen.push(spiffeIdOf(s.getPeerCertificate()) ?? '?'); s.end('hi'); });
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => srv.close());
  const c = await connect((srv.address() as AddressInfo).port, web);
  t.teardown(() => c.destroy());
  t.equal(spiffeIdOf(c.getPeerCertificate()), DB, 'server presented the destination pod identity');
  const [b] = (await once(c, 'data')) as [Buffer];
  t.equal(b.toString(), 'hi');
  t.same(seen, [WEB], 'and verified the client identity');
  t.equal(db.identity, DB);
});
