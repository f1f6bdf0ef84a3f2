import t from 'tap';
import { Backoff, backoffDelay } from '../../common/backoff.ts';

t.test('backoffDelay: base doubles per attempt up to the ceiling, jittered in [base/2, base]', (t) => {
  const s = { initialMs: 100, maxMs: 1000 };
  t.equal(backoffDelay(0, s, () => 0), 50, 'lower bound is half the base');
  t.equal(backoffDelay(0, s, () => 1), 100, 'upper bound is the base');
  t.equal(backoffDelay(3, s, () => 0.5), 600, 'doubles per attempt');
  t.equal(backoffDelay(50, s, () => 1), 1000, 'capped');
  t.equal(backoffDelay(1e6, s, () => 1), 1000, 'no overflow after very many failures');
  t.equal(backoffDelay(-1, s, () => 1), 100, 'a negative attempt counts as the first');
  t.equal(backoffDelay(2, { ...s, factor: 3 }, () => 1), 900, 'factor');
  t.end();
});

t.test('Backoff hands out backoffDelay for attempts 0, 1, 2, … until reset()', (t) => {
  const b = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 0.5 });
  t.same([b.next(), b.next(), b.next()], [0, 1, 2].map((a) => backoffDelay(a, { initialMs: 100, maxMs: 1000 }, () => 0.5)));
  t.equal(b.attempts, 3);
  b.reset();
  t.equal(b.next(), 75);
  t.end();
});
