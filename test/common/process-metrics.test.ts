// Process metrics: the standard prom-client set, with an event-loop lag sampler that does not
// keep an idle process awake (10 ms by default in prom-client: 100 wake-ups a second).
import t from 'tap';
import perfHooks from 'node:perf_hooks';
import { Registry } from 'prom-client';
import { collectProcessMetrics, EVENT_LOOP_SAMPLE_MS } from '../../common/process-metrics.ts';

t.test('the default set is registered, with a prefix when given', async (t) => {
  const plain = new Registry();
  collectProcessMetrics(plain);
  const text = await plain.metrics();
  t.match(text, /^process_resident_memory_bytes \d/m);
  t.match(text, /^nodejs_eventloop_lag_p99_seconds /m);
  t.match(text, /^nodejs_heap_space_size_used_bytes\{space="old"\}/m);
  const prefixed = new Registry();
  collectProcessMetrics(prefixed, 'rondo_controller_');
  t.match(await prefixed.metrics(), /^rondo_controller_nodejs_eventloop_lag_p99_seconds /m);
  t.ok(EVENT_LOOP_SAMPLE_MS >= 100, 'the lag sampler wakes the process at most 10 times a second');
});

t.test('the lag sampler gets our resolution, not prom-client’s 10 ms', (t) => {
  const real = perfHooks.monitorEventLoopDelay;
  const seen: (number | undefined)[] = [];
  perfHooks.monitorEventLoopDelay = (o) => { seen.push(o?.resolution); return real(o); };
  t.teardown(() => { perfHooks.monitorEventLoopDelay = real; });
  collectProcessMetrics(new Registry());
  t.same(seen, [EVENT_LOOP_SAMPLE_MS]);
  t.end();
});
