/**
 * A TCP listener whose connects hang until the test lets them through: a stopped child
 * process listens with a small backlog, and the test fills its accept queue itself, so the
 * kernel drops further SYNs and a connect stays in SYN_SENT. After `release()` the child
 * accepts again and the next SYN retransmission (about a second later) completes the
 * connect: a pod that answers slowly, without any timer in the test.
 */
import net from 'node:net';
import { spawn } from 'node:child_process';

/** A listener on `host` whose new connects hang until `release()`. */
export interface StalledListener {
  port: number;
  /** Lets the listener accept again: hanging connects complete on their next SYN retransmission. */
  release(): void;
  close(): Promise<void>;
}

const CHILD = `
const net = require('node:net');
const [host, backlog] = process.argv.slice(1);
const srv = net.createServer((c) => { c.on('error', () => undefined); c.on('data', () => undefined); });
srv.listen({ host, port: 0, backlog: Number(backlog) }, () => process.stdout.write(srv.address().port + '\\n'));
`;

/** Starts the listener; `queued` is its backlog (the kernel holds one connection more). */
export async function stalledListener(host: string, queued = 0): Promise<StalledListener> {
  const child = spawn(process.execPath, ['-e', CHILD, host, String(queued)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`stalled listener exited (${String(code)}) before listening on ${host}`)));
    child.stdout.once('data', (d: Buffer) => resolve(Number(String(d).trim())));
  });
  child.kill('SIGSTOP');
  // The stopped child accepts nothing: the kernel's queue takes backlog + 1 connections.
  const fillers: net.Socket[] = [];
  await Promise.all(Array.from({ length: queued + 1 }, () => new Promise<void>((resolve, reject) => {
    const s = net.connect({ host, port });
    fillers.push(s);
    s.once('connect', () => resolve());
    s.once('error', reject);
  })));
  for (const s of fillers) s.on('error', () => undefined);
  return {
    port,
    release: () => { child.kill('SIGCONT'); },
    close: async () => {
      for (const s of fillers) s.destroy();
      child.kill('SIGKILL');
      await exited;
    },
  };
}
