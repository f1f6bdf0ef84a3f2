/** Runs system commands (ip, iptables, sysctl) and turns failures into errors naming the command. */
import { execFile } from 'node:child_process';
import { RondoError } from '../common/errors.ts';

/** What a command printed. */
export interface CommandResult { stdout: string; stderr: string; code: number }
/** Runs `cmd args` with optional stdin; rejects with a LabCommandError unless `allowFail`. */
export type CommandRunner = (cmd: string, args: readonly string[], o?: { input?: string; allowFail?: boolean; timeoutMs?: number }) => Promise<CommandResult>;

/** A system command that failed; the message holds the command line and its stderr. */
export class LabCommandError extends RondoError {
  constructor(message: string) {
    super('RONDO_E_LAB_COMMAND', message);
    this.name = 'LabCommandError';
  }
}

/** The real runner: execFile, no shell. */
export const runCommand: CommandRunner = (cmd, args, o = {}) =>
  new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: o.timeoutMs ?? 30_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1;
      if (err !== null && o.allowFail !== true) {
        const why = (err as { code?: unknown }).code === 'ENOENT' ? `${cmd} is not installed (install iproute2 / iptables)` : stderr.trim() || err.message;
        reject(new LabCommandError(`${cmd} ${args.join(' ')}: ${why}`));
        return;
      }
      resolve({ stdout, stderr, code });
    });
    if (o.input !== undefined) child.stdin?.end(o.input);
  });
