/** `node node-agent/main.ts …`: starts the node agent (see flags.ts for the flags). */
import { createLogger } from '../common/log.ts';
import { errorMessage } from '../common/errors.ts';
import { installCrashHandlers } from '../common/crash.ts';
import { USAGE, parseAgentCommand } from './flags.ts';
import { Capture } from './capture.ts';
import { Agent } from './agent.ts';
import { IdleReclaimer } from '../common/reclaim.ts';
import { setDefaultHighWaterMark } from 'node:stream';
import { STREAM_HIGH_WATER_MARK } from './dataplane.ts';

// Before any socket exists: the data path's streams get the larger buffer threshold.
setDefaultHighWaterMark(false, STREAM_HIGH_WATER_MARK);

async function main(): Promise<void> {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    process.stdout.write(`usage: ${USAGE}\n`);
    return;
  }
  const log = createLogger('node-agent');
  // A connection's errors stay on its sockets; anything that escapes ends the process and
  // the supervisor restarts it while the capture rules keep pods failing closed (crash.ts).
  installCrashHandlers({ log });
  let command;
  try {
    command = parseAgentCommand(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`node-agent: ${errorMessage(e)}\n`);
    process.exit(2);
  }
  if (command.kind === 'uninstall') {
    // No controller, token or CA needed: only this node's rules and sets go.
    await Capture.create({ log: log.child('capture') }).remove();
    log.info('node agent capture rules removed');
    return;
  }
  const flags = command.flags;
  const agent = await Agent.create({
    node: flags.node, controller: flags.controller, tokenFile: flags.tokenFile, caFile: flags.caFile, log,
    workers: flags.workers, adminPort: flags.adminPort, metricsPort: flags.metricsPort, drainMs: flags.drainMs, idleReclaimS: flags.idleReclaimS,
  });
  log.info('node agent started', { node: flags.node, workers: flags.workers, ports: agent.dataPorts });
  const reclaimer = flags.idleReclaimS > 0 ? new IdleReclaimer({ log, quietChecks: flags.idleReclaimS }).start() : undefined;
  await agent.run();
  reclaimer?.stop();
  if (flags.cleanupOnExit) {
    // After the drain: connections still open at the deadline were reset by then.
    await agent.removeCapture();
    log.info('capture rules removed on exit (--cleanup-on-exit)');
  }
  log.info('node agent stopped');
}

main().then(() => process.exit(0), (e: unknown) => {
  process.stderr.write(`node-agent: ${errorMessage(e)}\n`);
  process.exit(1);
});
