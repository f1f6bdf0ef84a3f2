/**
 * The lab's watcher process (`node lab/watch.ts <lab> <intervalMs> <runRoot>`): keeps the
 * state dir and the service DNAT rules in step with pod liveness, so the controller sees a
 * crashed pod without anyone running `status`. It exits when the lab's record is gone.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Lab } from './lab.ts';
import { errorMessage } from '../common/errors.ts';

const [name, interval, runRoot] = process.argv.slice(2);
if (name === undefined || runRoot === undefined) {
  process.stderr.write('usage: node lab/watch.ts <lab> <intervalMs> <runRoot>\n');
  process.exit(2);
}
const every = Math.max(100, Number(interval) || 1000);
const record = join(runRoot, name, 'record.json');

async function loop(): Promise<void> {
  let lastError = '';
  while (existsSync(record)) {
    try {
      await Lab.open(name!, { runRoot: runRoot! }).refresh();
      lastError = '';
    } catch (e) {
      // `down` removes the namespaces while we may be mid-refresh: report once, keep going until the record is gone.
      const m = errorMessage(e);
      if (m !== lastError) process.stderr.write(`${new Date().toISOString()} refresh failed: ${m}\n`);
      lastError = m;
    }
    await new Promise((r) => setTimeout(r, every));
  }
}

await loop();
