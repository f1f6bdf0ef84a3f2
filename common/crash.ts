/**
 * Crash policy of every Rondo process: an exception nobody caught (or a rejection nobody
 * handled) is logged with its code and ends the process with CRASH_EXIT_CODE after a short,
 * bounded flush of stdout/stderr. The supervisor (kubelet, the lab, the agent's primary for
 * a worker) starts a clean process; errors on one connection never get here, because every
 * socket and stream has its own 'error' handler. Why not log and carry on: after an
 * exception escaped, some half-done operation left state (a tracked connection, a pool
 * entry, a queue) that no code will fix, and a process that looks healthy but leaks or
 * misroutes is worse than a restart (the capture rules stay, so pods fail closed meanwhile).
 */
import type { Logger } from './log.ts';

/** Exit status after a crash (EX_SOFTWARE): tells a crash from bad flags (2) and a failed start (1). */
export const CRASH_EXIT_CODE = 70;

let installed = false;

/** Options of installCrashHandlers. */
export interface CrashHandlerOptions {
  log: Logger;
  /** Longest wait for stdout/stderr to drain before exiting (default 500 ms). */
  flushMs?: number;
  /** Injected by tests; default process.exit. */
  exit?: (code: number) => void;
}

/** The code to log for anything thrown: its own `code` (RONDO_E_…, ERR_…, E…) or RONDO_E_FATAL. */
export function crashCode(e: unknown): string {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code !== '' ? code : 'RONDO_E_FATAL';
}

function drained(stream: NodeJS.WritableStream): Promise<void> {
  return new Promise((resolve) => {
    try {
      // The callback runs once everything written before it has been handed to the OS.
      if (!stream.write('', () => resolve())) stream.once('drain', () => resolve());
    } catch {
      resolve();
    }
  });
}

/**
 * Installs the process's `uncaughtException` and `unhandledRejection` handlers (once per
 * process; a second call replaces nothing and returns false).
 */
export function installCrashHandlers(o: CrashHandlerOptions): boolean {
  if (installed) return false;
  installed = true;
  const exit = o.exit ?? ((code: number) => process.exit(code));
  let crashing = false;
  const crash = (kind: string, e: unknown): void => {
    // A second error while flushing changes nothing: the first one already decided.
    if (crashing) return;
    crashing = true;
    const error = e instanceof Error ? e : new Error(String(e));
    o.log.error(`${kind}: exiting so that a clean process is started`, { code: crashCode(e), error, stack: error.stack, exitCode: CRASH_EXIT_CODE });
    const done = (): void => exit(CRASH_EXIT_CODE);
    // Ref'd on purpose: the process must end even if the flush never completes.
    const bound = setTimeout(done, o.flushMs ?? 500);
    void Promise.all([drained(process.stdout), drained(process.stderr)]).then(() => { clearTimeout(bound); done(); });
  };
  process.on('uncaughtException', (e) => crash('uncaught exception', e));
  process.on('unhandledRejection', (e) => crash('unhandled rejection', e));
  return true;
}
