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
  t.equal(p.sysSeconds, 0.5, 'stime alone');
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

t.test('parseControlPlane reads bench/control-plane.ts output', async (t) => {
  const { parseControlPlane } = await import('../../bench/parse.ts');
  const out = `control-plane bench: 10000 pods, 1000 services, 100 node agents (loopback, v24.21.0)
  model build, cold:                 812.3 ms (second cold run 700.1 ms)
  model build, after one pod change: median 3.1 ms, max 9.0 ms (n=21)
  node-agent view (JSON):            4.2 MB
  initial snapshot to all proxies:   2210 ms
  one pod change -> all 100 ACKs: median 14.5 ms, p99 40.2 ms (n=50, debounce excluded)
  controller memory after the run:   rss 410 MiB, heap used 190 MiB, external 12 MiB
`;
  const r = parseControlPlane(out);
  t.same(r, { pods: 10000, services: 1000, proxies: 100, coldBuildMs: 812.3, incrementalBuildMs: 3.1, initialPushMs: 2210, podChangeMedianMs: 14.5, podChangeP99Ms: 40.2, controllerRssMiB: 410, controllerHeapMiB: 190 });
  t.throws(() => parseControlPlane(out.replace(/.*ACKs.*\n/, '')), /no pod change line/);
});

t.test('sumMetric adds every label set of one metric and nothing with a longer name', async (t) => {
  const { sumMetric } = await import('../../bench/parse.ts');
  const text = `# HELP istio_tcp_connections_opened_total x
istio_tcp_connections_opened_total{a="1"} 3
istio_tcp_connections_opened_total{a="2"} 4
istio_tcp_connections_opened_total_extra 100
istio_tcp_connections_opened_total 1
`;
  t.equal(sumMetric(text, 'istio_tcp_connections_opened_total'), 8);
  t.equal(sumMetric('', 'x'), 0);
});

t.test('HAProxy configs carry one TLS 1.3 verified tunnel per plan', async (t) => {
  const { tunnelConfigs } = await import('../../bench/haproxy.ts');
  const certs = { ca: '/c/ca.pem', client: '/c/client.pem', server: '/c/server.pem' };
  const cfg = tunnelConfigs([
    { clientSide: { listen: '10.250.0.11', port: 18080 }, serverSide: { listen: '10.250.0.12', port: 18443 }, target: { ip: '10.244.2.2', port: 8080 } },
    { clientSide: { listen: '10.250.0.11', port: 15201 }, serverSide: { listen: '10.250.0.12', port: 15443 }, target: { ip: '10.244.2.2', port: 5201 } },
  ], certs);
  t.match(cfg.client, /bind 10\.250\.0\.11:18080[\s\S]*server peer 10\.250\.0\.12:18443 ssl crt \/c\/client\.pem ca-file \/c\/ca\.pem verify required/);
  t.match(cfg.client, /bind 10\.250\.0\.11:15201[\s\S]*server peer 10\.250\.0\.12:15443 ssl/);
  t.match(cfg.server, /bind 10\.250\.0\.12:18443 ssl crt \/c\/server\.pem ca-file \/c\/ca\.pem verify required[\s\S]*server app 10\.244\.2\.2:8080/);
  t.match(cfg.server, /server app 10\.244\.2\.2:5201/);
  t.match(cfg.server, /ssl-min-ver TLSv1\.3/);
  const single = tunnelConfigs({ clientSide: { listen: 'a', port: 1 }, serverSide: { listen: 'b', port: 2 }, target: { ip: 'c', port: 3 } }, certs);
  t.match(single.server, /server app c:3/);
});
