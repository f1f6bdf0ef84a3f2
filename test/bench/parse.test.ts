import t from 'tap';
import { parseWrk, parseH2load, parseIperf3, parseProcStat } from '../../bench/parse.ts';
import { summarize, median, ratio } from '../../bench/stats.ts';
import { renderMarkdown, barChart } from '../../bench/report.ts';

t.test('parseWrk reads the WRK_JSON line of bench/wrk-json.lua', (t) => {
  const out = 'Running 1s test\nWRK_JSON {"requests":2000,"duration_us":1000000,"bytes":1,"errors":{"connect":0,"read":1,"write":0,"status":2,"timeout":0},"latency_us":{"min":1,"mean":400.5,"max":900,"p50":300,"p90":500,"p99":800,"p999":890}}\n';
  const r = parseWrk(out);
  t.equal(r.rps, 2000);
  t.equal(r.errors, 3);
  t.equal(r.latency.p999, 890);
  t.throws(() => parseWrk('no json here'), /WRK_JSON/);
  t.end();
});

t.test('parseH2load reads rps and failures', (t) => {
  const out = `finished in 2.00s, 15000.50 req/s, 16.5MB/s
requests: 30001 total, 30001 started, 30001 done, 30000 succeeded, 1 failed, 0 errored, 0 timeout
status codes: 30000 2xx, 0 3xx, 0 4xx, 1 5xx
                     min         max         mean         sd        +/- sd
time for request:       45us      2.31ms       120us        30us    90.00%
`;
  const r = parseH2load(out);
  t.equal(r.rps, 15000.5);
  t.equal(r.requests, 30000);
  t.equal(r.errors, 1);
  t.equal(r.latency.mean, 120);
  t.equal(r.latency.max, 2310);
  t.end();
});

t.test('parseIperf3 and parseProcStat', (t) => {
  t.same(parseIperf3(JSON.stringify({ end: { sum_received: { bits_per_second: 5e9 }, sum_sent: { retransmits: 3 } } })), { gbps: 5, retransmits: 3 });
  t.throws(() => parseIperf3(JSON.stringify({ error: 'unable to connect' })), /unable to connect/);
  const stat = '1234 (node worker) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0';
  const p = parseProcStat(stat, 'VmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n');
  t.equal(p.cpuSeconds, 3);
  t.equal(p.rssBytes, 1024 * 1024);
  t.equal(p.hwmBytes, 2048 * 1024);
  t.end();
});

t.test('stats and report', (t) => {
  t.equal(median([3, 1, 2]), 2);
  t.equal(median([4, 1, 2, 3]), 2.5);
  t.same(summarize([5, Number.NaN, 1, 3]), { median: 3, min: 1, max: 5, n: 3 });
  t.ok(Number.isNaN(ratio(1, 0)));
  const md = renderMarkdown({
    startedAt: 'a', finishedAt: 'b', machine: { cpus: 2 }, rounds: 3,
    figures: [{ key: 'rps_c16', label: 'c=16 requests/s', unit: 'req/s', higherIsBetter: true }],
    paths: [
      { name: 'direct', label: 'direct', figures: { rps_c16: { median: 70000, min: 69000, max: 71000, n: 3 } } },
      { name: 'haproxy', label: 'HAProxy', figures: { rps_c16: { median: 30000, min: 29000, max: 31000, n: 3 } } },
      { name: 'l4', label: 'Rondo L4', figures: { rps_c16: { median: 36000, min: 35000, max: 37000, n: 3 } } },
    ],
    extra: {}, targets: [{ figure: 'L4 c=16 vs HAProxy', target: '≥ 1.2×', measured: '1.20×', met: true }], notes: [],
  });
  t.match(md, /\| Rondo L4 \| 36\.0k \| 35\.0k–37\.0k \| 0\.51× \| 1\.20× \|/);
  t.match(md, /\| L4 c=16 vs HAProxy \| ≥ 1\.2× \| 1\.20× \| yes \|/);
  const svg = barChart('t', 'ms', ['a', 'b'], [{ name: 'x', values: [1, Number.NaN] }]);
  t.match(svg, /^<svg/);
  t.equal((svg.match(/<rect x=/g) ?? []).length, 2, 'one bar plus one legend swatch');
  t.end();
});
