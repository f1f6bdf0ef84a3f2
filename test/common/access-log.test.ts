// Access log: one JSON line per connection; lines of one event-loop turn go out in one write.
import t from 'tap';
import { createAccessLog } from '../../common/access-log.ts';

t.test('lines of one turn are written together, in order, as JSON lines', (t) => {
  const writes: string[] = [];
  const pending: (() => void)[] = [];
  const log = createAccessLog((l) => writes.push(l), (fn) => pending.push(fn));
  log({ direction: 'outbound', src: '10.244.1.5:40000', dst: '10.244.2.7:8080', outcome: 'ok', bytesSent: 3 });
  log({ direction: 'inbound', src: '10.250.0.11:5000', dst: '10.244.2.7:8080', outcome: 'refused', reason: 'denied by demo/deny' });
  t.equal(writes.length, 0, 'nothing written before the turn ends');
  t.equal(pending.length, 1, 'one flush scheduled per turn');
  pending.shift()!();
  t.equal(writes.length, 1);
  const lines = writes[0]!.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.match(lines, [{ direction: 'outbound', outcome: 'ok', bytesSent: 3, time: /^\d{4}-/ }, { direction: 'inbound', reason: 'denied by demo/deny' }]);
  log({ direction: 'outbound', src: 'a', dst: 'b', outcome: 'reset' });
  t.equal(pending.length, 1, 'the next turn schedules again');
  t.end();
});

t.test('flush() writes what is pending at once (process exit), and nothing when empty', (t) => {
  const writes: string[] = [];
  const log = createAccessLog((l) => writes.push(l), () => undefined);
  log.flush();
  t.equal(writes.length, 0);
  log({ direction: 'outbound', src: 'a', dst: 'b', outcome: 'ok' });
  log.flush();
  t.equal(writes.length, 1);
  t.match(writes[0], /"outcome":"ok"}\n$/);
  t.end();
});

t.test('a large batch is written before the turn ends (bounded buffer)', (t) => {
  const writes: string[] = [];
  const log = createAccessLog((l) => writes.push(l), () => undefined);
  for (let i = 0; i < 1000; i++) log({ direction: 'outbound', src: `10.244.1.5:${i}`, dst: '10.244.2.7:8080', outcome: 'ok', reason: 'x'.repeat(80) });
  t.ok(writes.length >= 1, 'written while the turn is still running');
  t.ok(writes.every((w) => w.length <= 64 * 1024 + 512), 'each write stays near 64 KiB');
  t.end();
});

t.test('a refusal carries its registered code next to the human reason', (t) => {
  const writes: string[] = [];
  const log = createAccessLog((l) => writes.push(l), () => undefined);
  log({ direction: 'inbound', src: 'a', dst: 'b', outcome: 'refused', code: 'RONDO_E_POLICY_DENIED', reason: 'denied by DENY policy demo/d' });
  log.flush();
  t.match(JSON.parse(writes[0]!) as Record<string, unknown>, { code: 'RONDO_E_POLICY_DENIED', reason: 'denied by DENY policy demo/d' });
  t.end();
});

t.test('the writer takes any record shape (the waypoint logs requests)', (t) => {
  const writes: string[] = [];
  const log = createAccessLog<{ method: string; path: string; status: number }>((l) => writes.push(l), () => undefined);
  log({ method: 'GET', path: '/x', status: 200 });
  log.flush();
  t.match(JSON.parse(writes[0]!) as Record<string, unknown>, { method: 'GET', path: '/x', status: 200, time: /^\d{4}-/ });
  t.end();
});
