// Loopback helpers for tests that start real processes: a free port, and waiting for an
// HTTP endpoint to answer a given status.
import net from 'node:net';

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

/** Polls `url` every 50 ms until it answers `want` (or `tries` run out); the last status. */
export async function poll(url: string, want: number, tries = 300): Promise<number> {
  let status = 0;
  for (let i = 0; i < tries && status !== want; i++) {
    status = await fetch(url).then((r) => r.status, () => 0);
    if (status !== want) await new Promise((r) => setTimeout(r, 50));
  }
  return status;
}
