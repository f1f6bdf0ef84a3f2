/**
 * How a proxy process serves until SIGTERM or SIGINT: the signal starts a drain with the
 * proxy's deadline (open connections finish until then), and the serving call returns once
 * the proxy has closed, by signal or by close().
 */
import type { Logger } from './log.ts';

/** Runs `start`, drains through `close(drainMs)` on SIGTERM/SIGINT, resolves when `finished` does. */
export async function serveUntilSignal(o: { log: Logger; drainMs: number; start: () => void; close: (deadlineMs: number) => Promise<void>; finished: Promise<void> }): Promise<void> {
  const onSignal = (sig: string): void => {
    o.log.info('draining', { signal: sig, deadlineMs: o.drainMs });
    void o.close(o.drainMs);
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  try {
    o.start();
    await o.finished;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}
