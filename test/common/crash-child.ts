// A process with Rondo's crash handlers and an open server (so only the handler can end it);
// argv[2] says how it fails. Spawned by crash.test.ts.
import net from 'node:net';
import { createLogger } from '../../common/log.ts';
import { installCrashHandlers } from '../../common/crash.ts';

const log = createLogger('crash-child');
installCrashHandlers({ log });
const mode = process.argv[2];
const server = net.createServer().listen(0, '127.0.0.1', () => {
  process.stdout.write('listening\n');
  if (mode === 'throw' || mode === 'twice') {
    setImmediate(() => { throw Object.assign(new Error('boom in a callback'), { code: 'ERR_TEST_BOOM' }); });
    if (mode === 'twice') setImmediate(() => { throw new Error('second boom'); });
  } else if (mode === 'reject') {
    // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- what a careless library might do
    void Promise.reject('a bare string');
  }
});
server.unref();
// Keeps the process alive: without the handler exiting, it would run forever.
setInterval(() => undefined, 1000);
