-- Prints wrk's results as one JSON line (prefixed WRK_JSON) so the bench reads numbers, not prose.
-- Latencies are in microseconds.
done = function(summary, latency, requests)
  local p = function(q) return latency:percentile(q) end
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.2f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency.min, latency.mean, latency.max, p(50), p(90), p(99), p(99.9)))
end
