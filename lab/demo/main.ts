/**
 * `rondo-demo`: the lab's demo workload. Subcommands: echo (HTTP/1.1 + h2c + gRPC echo
 * server), tcp-echo, client (load generator printing a JSON summary) and tcp-client.
 */
import { createLogger } from '../../common/log.ts';
import { InvalidInputError, errorMessage } from '../../common/errors.ts';
import { parseDemoArgs, USAGE } from './args.ts';
import type { DemoCommand } from './args.ts';
import { identityFromEnv } from './identity.ts';
import { EchoServer } from './echo-server.ts';
import { TcpEchoServer } from './tcp-echo.ts';
import { runLoad } from './load-client.ts';
import { tcpExchange } from './tcp-client.ts';

const log = createLogger('demo');

/** Closes `server` on SIGTERM/SIGINT; a second signal exits at once. */
function onSignals(close: () => Promise<void>): void {
  let stopping = false;
  const stop = (sig: string): void => {
    if (stopping) process.exit(1);
    stopping = true;
    log.info('shutting down', { signal: sig });
    close().then(() => { process.exitCode = 0; }, (e: unknown) => { log.error('shutdown failed', { err: errorMessage(e) }); process.exitCode = 1; });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

async function run(c: DemoCommand): Promise<void> {
  switch (c.cmd) {
    case 'echo': {
      const identity = identityFromEnv();
      const s = await EchoServer.create({
        port: c.port, host: c.host, identity, log,
        behaviour: { failRate: c.failRate, failStatus: c.failStatus, latencyMs: c.latencyMs },
        ...(c.bodyBytes !== undefined ? { bodyBytes: c.bodyBytes } : {}),
      });
      log.info('echo listening', { host: c.host, port: s.port, protocols: ['HTTP/1.1', 'h2c', 'gRPC'], ...identity });
      onSignals(() => s.close());
      return;
    }
    case 'tcp-echo': {
      const s = await TcpEchoServer.create({ port: c.port, host: c.host, log });
      log.info('tcp-echo listening', { host: c.host, port: s.port });
      onSignals(() => s.close());
      return;
    }
    case 'client': {
      const summary = await runLoad(c);
      process.stdout.write(JSON.stringify(summary) + '\n');
      if (summary.completed === 0) process.exitCode = 1;
      return;
    }
    case 'tcp-client': {
      const reply = await tcpExchange(c.host, c.port, c.message, c.timeoutMs);
      process.stdout.write(reply);
      return;
    }
  }
}

let cmd: DemoCommand;
try {
  cmd = parseDemoArgs(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`rondo-demo: ${errorMessage(e)}\n${e instanceof InvalidInputError ? USAGE + '\n' : ''}`);
  process.exit(2);
}
run(cmd).catch((e: unknown) => {
  log.error('failed', { err: e instanceof Error ? e : errorMessage(e) });
  process.exitCode = 1;
});
