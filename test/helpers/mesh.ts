/**
 * Helpers for the mesh end-to-end tests in a lab: metric scraping and sampling, bounded
 * polling, packet capture on the underlay bridge, throwaway certificates (openssl) and
 * small Node scripts run inside a lab namespace.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Lab } from '../../lab/lab.ts';
import type { CommandResult } from '../../lab/run-command.ts';
import { runCommand } from '../../lab/run-command.ts';
import type { TestLike } from './lab.ts';

/** Polls `check` every `intervalMs` until it returns true; throws naming `what` after `timeoutMs`. */
export async function waitUntil(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 15_000, intervalMs = 200): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** The node agent's /metrics text of `node` (scraped from inside the node netns). */
export async function scrapeAgent(lab: Lab, node: string): Promise<string> {
  const ip = lab.plan.nodes.find((n) => n.name === node)?.ip ?? '';
  const r = await lab.execNode(node, ['curl', '-s', '-m', '3', `http://${ip}:15020/metrics`], { allowFail: true, timeoutMs: 6000 });
  return r.stdout;
}

/**
 * A controller `/debug/*` page as text, asked from inside the controller's netns (the pages
 * answer only the controller's own host, or the holder of its --debug-token-file).
 */
export async function controllerDebug(lab: Lab, path: string): Promise<string> {
  const ctl = lab.plan.controller;
  const r = await runCommand('ip', ['netns', 'exec', ctl.netns, 'curl', '-s', '-m', '3', `http://${ctl.ip}:15014/debug/${path}`], { allowFail: true, timeoutMs: 6000 });
  return r.stdout;
}

/** A node agent admin endpoint (127.0.0.1:15000 in the node netns) as text. */
export async function agentAdmin(lab: Lab, node: string, path: string): Promise<string> {
  const r = await lab.execNode(node, ['curl', '-s', '-m', '3', `http://127.0.0.1:15000${path}`], { allowFail: true, timeoutMs: 6000 });
  return r.stdout;
}

/**
 * Sum of every sample of metric `name` whose label set contains all `labels` (`k="v"`
 * strings); 0 when there is none (a counter that never moved is absent).
 */
export function sample(text: string, name: string, ...labels: string[]): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue;
    const close = line.lastIndexOf('}');
    const labelPart = close > 0 ? line.slice(name.length + 1, close) : '';
    const value = Number(line.slice(close > 0 ? close + 1 : name.length).trim().split(' ')[0]);
    if (labels.every((l) => labelPart.split(/,(?=[a-z_]+=")/).includes(l))) sum += value;
  }
  return sum;
}

/** Sends `msg` with the demo TCP client from a pod and returns what came back (empty when refused). */
export async function tcpSend(lab: Lab, from: string, host: string, port: number, msg: string, timeoutMs = 4000): Promise<CommandResult> {
  return lab.exec(from, ['rondo-demo', 'tcp-client', host, String(port), msg, '--timeout-ms', String(timeoutMs)], { allowFail: true, timeoutMs: timeoutMs + 10_000 });
}

/** Waits until an agent's admin /config_dump contains (or, with `present: false`, lacks) `needle`. */
export async function waitForConfig(lab: Lab, nodes: string[], needle: string, present = true, timeoutMs = 15_000): Promise<void> {
  await waitUntil(`config with${present ? '' : 'out'} "${needle}" on ${nodes.join(', ')}`, async () => {
    for (const n of nodes) if ((await agentAdmin(lab, n, '/config_dump')).includes(needle) !== present) return false;
    return true;
  }, timeoutMs, 250);
}

/** A running tcpdump on the lab's underlay bridge. */
export interface BridgeCapture { file: string; stop(): Promise<void> }

/**
 * Starts `tcpdump -i br0 -w <file>` inside the lab's bridge netns and waits until it
 * listens; stop() sends SIGINT (flushes the file); teardown kills it if the test did not.
 */
export async function captureBridge(t: TestLike, lab: Lab, dir: string): Promise<BridgeCapture> {
  const file = join(dir, 'underlay.pcap');
  const child: ChildProcess = spawn('ip', ['netns', 'exec', lab.plan.bridge.netns, 'tcpdump', '-i', lab.plan.bridge.device, '-U', '-n', '-s', '0', '-w', file, 'ip'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let exited = false;
  const done = new Promise<void>((r) => child.once('exit', () => { exited = true; r(); }));
  t.teardown(async () => { if (!exited) { child.kill('SIGKILL'); await done; } });
  let err = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`tcpdump did not start listening within 5 s: ${err}`)), 5000);
    child.stderr?.on('data', (c: Buffer) => {
      err += c.toString();
      if (err.includes('listening on')) { clearTimeout(timer); resolve(); }
    });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`tcpdump exited with ${code}: ${err}`)); });
  });
  return {
    file,
    stop: async () => {
      if (exited) return;
      child.kill('SIGINT');
      const killer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await done;
      clearTimeout(killer);
    },
  };
}

/** One TCP packet of a capture: addresses and ports. */
export interface PacketSummary { src: string; sport: number; dst: string; dport: number; line: string }

/** The TCP packets of a pcap file (`tcpdump -r -nn`); other lines are ignored. */
export async function tcpPackets(file: string): Promise<PacketSummary[]> {
  const r = await runCommand('tcpdump', ['-r', file, '-nn', '-q', 'tcp'], { allowFail: true });
  const out: PacketSummary[] = [];
  for (const line of r.stdout.split('\n')) {
    const m = /IP (\d+\.\d+\.\d+\.\d+)\.(\d+) > (\d+\.\d+\.\d+\.\d+)\.(\d+):/.exec(line);
    if (m !== null) out.push({ src: m[1]!, sport: Number(m[2]), dst: m[3]!, dport: Number(m[4]), line });
  }
  return out;
}

/** A scratch directory removed in teardown. */
export function scratchDir(t: TestLike, prefix = 'rondo-e2e-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Runs openssl with `args`; throws with stderr when it fails. */
async function openssl(args: string[]): Promise<void> {
  await runCommand('openssl', args);
}

/** Makes a self-signed P-256 CA (`<name>-ca.pem`, `<name>-ca-key.pem`) in `dir`; returns the paths. */
export async function makeCa(dir: string, name: string): Promise<{ cert: string; key: string }> {
  const key = join(dir, `${name}-ca-key.pem`);
  const cert = join(dir, `${name}-ca.pem`);
  await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', `/O=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  return { cert, key };
}

/** Issues a P-256 client/server certificate with SPIFFE ID `spiffe` signed by `ca`; returns PEM paths. */
export async function issueLeaf(dir: string, name: string, ca: { cert: string; key: string }, spiffe: string): Promise<{ cert: string; key: string }> {
  const key = join(dir, `${name}-key.pem`);
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.pem`);
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, `subjectAltName=critical,URI:${spiffe}\nkeyUsage=critical,digitalSignature,keyAgreement\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=critical,CA:FALSE\n`);
  await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', csr, '-subj', '/O=rondo-test']);
  await openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-out', cert, '-days', '1', '-extfile', ext]);
  return { cert, key };
}

/** Writes `code` (an ES module) to `dir` and runs it with this Node inside a node's netns with `args`. */
export async function runNodeScript(lab: Lab, node: string, dir: string, name: string, code: string, args: string[], timeoutMs = 30_000): Promise<CommandResult> {
  const file = join(dir, `${name}.mjs`);
  writeFileSync(file, code);
  return lab.execNode(node, [process.execPath, file, ...args], { allowFail: true, timeoutMs });
}
