// The clock abstraction: a ManualClock fires timers only when advanced, in due order; the real
// clock hands out Node's own timers.
import t from 'tap';
import { ManualClock, realClock } from '../../common/clock.ts';

t.test('advance fires due timers earliest first, with now() at each due time', (t) => {
  const c = new ManualClock(1000);
  const fired: string[] = [];
  c.setTimeout(() => fired.push(`b@${c.now()}`), 20);
  c.setTimeout(() => fired.push(`a@${c.now()}`), 10);
  c.setTimeout(() => fired.push(`c@${c.now()}`), 20); // same time as b: creation order
  c.advance(9);
  t.same(fired, [], 'nothing is due yet');
  t.equal(c.now(), 1009);
  c.advance(11);
  t.same(fired, ['a@1010', 'b@1020', 'c@1020']);
  t.equal(c.now(), 1020);
  t.same(c.pending(), [], 'fired timeouts are gone');
  t.end();
});

t.test('timers scheduled by callbacks fire within the same advance when due', (t) => {
  const c = new ManualClock();
  const fired: number[] = [];
  c.setTimeout(() => { fired.push(c.now()); c.setTimeout(() => fired.push(c.now()), 5); }, 5);
  c.advance(12);
  t.same(fired, [5, 10]);
  c.setTimeout(() => fired.push(c.now()), 0);
  t.same(fired, [5, 10], 'a zero delay still waits for the clock to move');
  c.advance(0);
  t.same(fired, [5, 10, 12]);
  t.end();
});

t.test('clearTimeout and clearInterval cancel; intervals repeat at their period', (t) => {
  const c = new ManualClock();
  let ticks = 0;
  const iv = c.setInterval(() => { ticks++; }, 100);
  const to = c.setTimeout(() => t.fail('cleared timer fired'), 50);
  c.clearTimeout(to);
  c.advance(350);
  t.equal(ticks, 3);
  t.same(c.pending(), [{ delayMs: 100, dueInMs: 50, repeat: true, refed: true }]);
  c.clearInterval(iv);
  c.advance(1000);
  t.equal(ticks, 3);
  c.clearTimeout(undefined);
  let zero = 0;
  const z = c.setInterval(() => { zero++; }, 0);
  c.advance(3);
  c.clearInterval(z);
  t.equal(zero, 3, 'an interval of 0 runs every millisecond, not forever');
  t.end();
});

t.test('handles report unref like Node timers', (t) => {
  const c = new ManualClock();
  const h = c.setTimeout(() => undefined, 10);
  t.equal(h.hasRef(), true);
  t.equal(h.unref(), h);
  t.equal(h.hasRef(), false);
  t.same(c.pending().map((p) => p.refed), [false]);
  h.ref();
  t.same(c.pending().map((p) => p.refed), [true]);
  t.throws(() => c.advance(-1), RangeError);
  t.end();
});

t.test('advanceAsync lets async code re-arm its timer after an await', async (t) => {
  const c = new ManualClock();
  const seen: number[] = [];
  const loop = async (): Promise<void> => {
    for (let i = 0; i < 3; i++) {
      await new Promise<void>((r) => c.setTimeout(r, 10));
      seen.push(c.now());
    }
  };
  const done = loop();
  c.advance(30);
  await new Promise((r) => setImmediate(r));
  t.same(seen, [30], 'advance() fired the first timer; its continuation ran afterwards, at 30, and re-armed for 40');
  await c.advanceAsync(30);
  await done;
  t.same(seen, [30, 40, 50], 'advanceAsync fires each re-armed timer at its own due time');
  t.equal(c.now(), 60);
  t.end();
});

t.test('the real clock uses Node timers', async (t) => {
  const before = Date.now();
  t.ok(Math.abs(realClock.now() - before) < 1000);
  const h = realClock.setTimeout(() => t.fail('cleared'), 1);
  t.equal(h.unref(), h, 'unref returns the handle');
  t.equal(h.hasRef(), false);
  realClock.clearTimeout(h);
  const fired = await new Promise<boolean>((resolve) => realClock.setTimeout(() => resolve(true), 1));
  t.ok(fired);
  let n = 0;
  await new Promise<void>((resolve) => {
    const iv = realClock.setInterval(() => { if (++n === 2) { realClock.clearInterval(iv); resolve(); } }, 1);
  });
  t.equal(n, 2);
});
