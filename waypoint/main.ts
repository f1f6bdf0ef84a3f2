/** `node waypoint/main.ts …`: starts a waypoint (see flags.ts for the flags). */
import { setDefaultHighWaterMark } from 'node:stream';
import { createLogger } from '../common/log.ts';
import { errorMessage } from '../common/errors.ts';
import { installCrashHandlers } from '../common/crash.ts';
import { USAGE, parseWaypointFlags } from './flags.ts';
import { Waypoint } from './waypoint.ts';

// Larger stream buffers than Node's 16 KiB: fewer reads and writes per body through the
// tunnels. Smaller than the agent's bulk-transfer setting: most HTTP messages are small.
setDefaultHighWaterMark(false, 64 * 1024);

async function main(): Promise<void> {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    process.stdout.write(`usage: ${USAGE}\n`);
    return;
  }
  const log = createLogger('waypoint');
  // A request's errors stay on its streams; anything that escapes ends the process and the
  // Deployment restarts it (crash.ts explains the policy).
  installCrashHandlers({ log });
  let flags;
  try {
    flags = parseWaypointFlags(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`waypoint: ${errorMessage(e)}\n`);
    process.exit(2);
  }
  const w = await Waypoint.create({
    namespace: flags.namespace, name: flags.name, controller: flags.controller, tokenFile: flags.tokenFile, caFile: flags.caFile, log,
    hbonePort: flags.hbonePort, adminPort: flags.adminPort, metricsPort: flags.metricsPort, drainMs: flags.drainMs,
  });
  log.info('waypoint started', { gateway: `${flags.namespace}/${flags.name}`, ports: w.ports });
  await w.run();
  log.info('waypoint stopped');
}

main().then(() => process.exit(0), (e: unknown) => {
  process.stderr.write(`waypoint: ${errorMessage(e)}\n`);
  process.exit(1);
});
