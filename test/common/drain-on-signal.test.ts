import t from 'tap';
import { createLogger } from '../../common/log.ts';
import { serveUntilSignal } from '../../common/drain-on-signal.ts';

t.test('SIGTERM drains with the deadline; the call returns once closed and leaves no listener', async (t) => {
  const before = process.listenerCount('SIGTERM');
  const beforeInt = process.listenerCount('SIGINT');
  let done!: () => void;
  const finished = new Promise<void>((r) => { done = r; });
  const closes: number[] = [];
  let started = false;
  const serving = serveUntilSignal({ log: createLogger('test', { write: () => true }), drainMs: 1234, start: () => { started = true; }, close: (d) => { closes.push(d); done(); return Promise.resolve(); }, finished });
  t.ok(started);
  t.equal(process.listenerCount('SIGTERM'), before + 1);
  process.emit('SIGTERM');
  await serving;
  t.same(closes, [1234], 'close got the drain deadline');
  t.equal(process.listenerCount('SIGTERM'), before, 'listener removed');
  t.equal(process.listenerCount('SIGINT'), beforeInt);
});
