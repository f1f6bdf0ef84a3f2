// The idle reclaimer: one memory-reducing GC and malloc_trim once the agent goes quiet after its RSS grew.
import t from 'tap';
import { createLogger } from '../../common/log.ts';
import { IdleReclaimer, processHooks } from '../../common/reclaim.ts';
import type { ReclaimHooks } from '../../common/reclaim.ts';
import { ManualClock } from '../../common/clock.ts';

const lines: string[] = [];
const log = createLogger('test', { write: (l: string) => { lines.push(l); return true; } }, 'debug');
const MB = 1024 * 1024;

/** A fake process: CPU, RSS and heap set by the test; GC drops RSS to `live` and the heap to 5 MB. */
function fake(): ReclaimHooks & { cpu: number; rssNow: number; heap: number; live: number; gcs: number; trims: number; fail: boolean } {
  const f = {
    cpu: 0, rssNow: 0, heap: 0, live: 10 * MB, gcs: 0, trims: 0, fail: false,
    cpuMicros: () => f.cpu,
    rss: () => f.rssNow,
    heapUsed: () => f.heap,
    gc: () => { if (f.fail) return Promise.reject(new Error('no gc')); f.gcs++; f.rssNow = f.live; f.heap = 5 * MB; return Promise.resolve(); },
    trim: () => { f.trims++; },
  };
  return f;
}

t.test('reclaims once after two quiet checks, only when RSS grew', async (t) => {
  const f = fake();
  const r = new IdleReclaimer({ log, hooks: f, checkMs: 1000, quietChecks: 2 });
  f.rssNow = 80 * MB;
  f.cpu += 500_000; await r.check(); // busy: half a core
  f.cpu += 1_000; await r.check(); // quiet 1
  t.equal(f.gcs, 0, 'one quiet check is not enough');
  f.cpu += 1_000; await r.check(); // quiet 2
  t.equal(f.gcs, 1, 'GC after two quiet checks');
  t.equal(f.trims, 1, 'malloc_trim after the GC');
  t.equal(r.runs, 1);
  await r.check(); await r.check();
  t.equal(f.gcs, 1, 'a quiet agent whose RSS did not grow is left alone');
  f.rssNow = f.live + 4 * MB; await r.check();
  t.equal(f.gcs, 1, 'growth under 8 MB is not worth a GC');
  f.rssNow = f.live + 9 * MB; await r.check();
  t.equal(f.gcs, 2, 'growth over 8 MB is');
});

t.test('a busy process is never collected by the reclaimer', async (t) => {
  const f = fake();
  const r = new IdleReclaimer({ log, hooks: f, checkMs: 1000, quietChecks: 2 });
  f.rssNow = 500 * MB;
  for (let i = 0; i < 5; i++) { f.cpu += 100_000; await r.check(); } // 10 % of a core each second
  t.equal(f.gcs, 0);
  f.cpu += 1_000; await r.check();
  f.cpu += 100_000; await r.check(); // busy again: the quiet count restarts
  f.cpu += 1_000; await r.check();
  t.equal(f.gcs, 0);
  f.cpu += 1_000; await r.check();
  t.equal(f.gcs, 1);
});

t.test('the quiet test is an average over the window: a short blip does not restart the wait', async (t) => {
  const f = fake();
  const r = new IdleReclaimer({ log, hooks: f, checkMs: 1000, quietChecks: 5 });
  f.rssNow = 100 * MB;
  f.cpu += 2_000_000; await r.check(); // the load
  for (let i = 0; i < 4; i++) { f.cpu += 1_000; await r.check(); }
  t.equal(f.gcs, 0, 'the load is still in the window');
  f.cpu += 50_000; await r.check(); // V8's own GC work: 5 % of one second
  t.equal(f.gcs, 1, 'average 1 % of a core over 5 s: quiet');
});

t.test('RSS, not the heap, decides: garbage outside the heap (Buffers in malloc) is reclaimed too', async (t) => {
  const f = fake();
  const r = new IdleReclaimer({ log, hooks: f, checkMs: 1000, quietChecks: 2 });
  f.rssNow = 150 * MB; f.heap = 1 * MB; // a heap that did not grow, an RSS that did
  await r.check(); await r.check();
  t.equal(f.gcs, 1);
  t.match(lines.at(-1) ?? '', /"rssBeforeMB":150,"rssAfterMB":10/);
});

t.test('the default window is 30 checks, as --idle-reclaim-s', async (t) => {
  const f = fake();
  const r = new IdleReclaimer({ log, hooks: f, checkMs: 1000 });
  f.rssNow = 100 * MB;
  for (let i = 0; i < 29; i++) await r.check();
  t.equal(f.gcs, 0);
  await r.check();
  t.equal(f.gcs, 1);
});

t.test('a failing GC is logged and the agent goes on', async (t) => {
  const f = fake();
  f.fail = true; f.rssNow = 100 * MB;
  const r = new IdleReclaimer({ log, hooks: f, checkMs: 1000, quietChecks: 2 });
  lines.length = 0;
  await r.check(); await r.check();
  t.equal(r.runs, 0);
  t.match(lines.join(''), /idle memory reclaim failed.*no gc/);
  f.fail = false;
  await r.check();
  t.equal(r.runs, 1, 'the next quiet check tries again');
});

t.test('the real hooks collect garbage in this process', async (t) => {
  const h = processHooks(log);
  let junk: unknown[] | undefined = Array.from({ length: 200_000 }, (_, i) => ({ i, s: `x${i}` }));
  const before = h.heapUsed();
  t.ok((junk?.length ?? 0) > 0);
  junk = undefined;
  await h.gc();
  h.trim();
  t.ok(h.heapUsed() < before - 5 * MB, `heap fell from ${(before / MB).toFixed(1)} to ${(h.heapUsed() / MB).toFixed(1)} MB`);
  t.ok(h.cpuMicros() > 0);
  t.ok(h.rss() > h.heapUsed(), 'RSS covers the heap and more');
});

t.test('start and stop manage one unref’d timer that drives the checks', async (t) => {
  const clock = new ManualClock();
  const f = fake();
  f.rssNow = 100 * MB;
  const r = new IdleReclaimer({ log, hooks: f, checkMs: 10, quietChecks: 2, clock });
  t.same(clock.pending(), [], 'nothing armed before start()');
  t.equal(r.start(), r);
  r.start();
  t.same(clock.pending(), [{ delayMs: 10, dueInMs: 10, repeat: true, refed: false }], 'one interval, unref’d: it never keeps the agent alive');
  clock.advance(19);
  t.equal(f.gcs, 0, 'one check so far: the window is not full');
  await clock.advanceAsync(1);
  t.equal(f.gcs, 1, 'the second tick completed the quiet window');
  r.stop();
  t.same(clock.pending(), [], 'stop() clears it');
  r.stop();
  f.rssNow = 200 * MB;
  clock.advance(1000);
  t.equal(f.gcs, 1, 'no check after stop');
});
