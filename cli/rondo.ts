#!/usr/bin/env node
/** The `rondo` command: a table of top-level commands, each a module with its own argument parsing. */
import { errorMessage } from '../common/errors.ts';
import { runLabCli } from '../lab/cli.ts';

/** A top-level command: gets its arguments, resolves to the exit code. */
export type CommandMain = (args: string[]) => Promise<number>;

/** Top-level commands; add new ones here (install, enroll, waypoint, status, check, stat). */
export const COMMANDS: Record<string, { summary: string; main: CommandMain }> = {
  lab: { summary: 'a local cluster in network namespaces: up, down, status, exec, logs, apply, delete', main: runLabCli },
};

function usage(): string {
  return ['usage: rondo <command> [args]', '', 'commands:', ...Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(10)} ${c.summary}`), ''].join('\n');
}

/** Runs the CLI with argv (without node and script). */
export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '-h' || cmd === '--help' || cmd === 'help') {
    process.stdout.write(usage());
    return cmd === undefined ? 2 : 0;
  }
  const c = COMMANDS[cmd];
  if (c === undefined) {
    process.stderr.write(`rondo: unknown command "${cmd}"\n${usage()}`);
    return 2;
  }
  return c.main(rest);
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (e: unknown) => {
      const code = (e as { code?: unknown }).code;
      process.stderr.write(`rondo: ${errorMessage(e)}${typeof code === 'string' ? ` [${code}]` : ''}\n`);
      process.exitCode = code === 'RONDO_E_USAGE' ? 2 : 1;
    },
  );
}
