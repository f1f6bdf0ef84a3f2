import t from 'tap';
import { parseDemoArgs } from '../../lab/demo/args.ts';

t.test('echo flags parse with defaults', (t) => {
  t.same(parseDemoArgs(['echo']), { cmd: 'echo', port: 8080, host: '0.0.0.0', failRate: 0, failStatus: 503, latencyMs: 0 });
  t.same(parseDemoArgs(['echo', '--port', '0', '--fail-rate', '0.2', '--fail-status', '500', '--latency-ms', '20', '--body-bytes', '1024']),
    { cmd: 'echo', port: 0, host: '0.0.0.0', failRate: 0.2, failStatus: 500, latencyMs: 20, bodyBytes: 1024 });
  t.end();
});

t.test('client flags parse, headers repeat, mode picks the protocol', (t) => {
  t.same(parseDemoArgs(['client', 'http://backend:80/x', '-n', '10', '-c', '2', '--grpc', '--header', 'X-A: 1', '--header', 'b:2']),
    { cmd: 'client', url: 'http://backend:80/x', requests: 10, concurrency: 2, mode: 'grpc', headers: { 'x-a': '1', b: '2' }, timeoutMs: 5000 });
  t.equal((parseDemoArgs(['client', 'http://a/', '--h2c']) as { mode: string }).mode, 'h2c');
  t.same(parseDemoArgs(['tcp-client', '10.0.0.1', '9000', 'hi']), { cmd: 'tcp-client', host: '10.0.0.1', port: 9000, message: 'hi', timeoutMs: 5000 });
  t.same(parseDemoArgs(['tcp-client', 'h', '9000', 'msg', '--timeout-ms', '250']), { cmd: 'tcp-client', host: 'h', port: 9000, message: 'msg', timeoutMs: 250 }, 'flags after positionals');
  t.same(parseDemoArgs(['tcp-echo']), { cmd: 'tcp-echo', port: 9000, host: '0.0.0.0' });
  t.end();
});

t.test('bad input names the flag at fault', (t) => {
  const cases: [string[], RegExp][] = [
    [[], /missing subcommand/],
    [['serve'], /unknown subcommand "serve"/],
    [['echo', '--port', '70000'], /--port must be a whole number between 0 and 65535/],
    [['echo', '--fail-rate', '1.5'], /--fail-rate must be a number between 0 and 1/],
    [['echo', '--fail-rate', 'x'], /--fail-rate must be a number/],
    [['echo', '--fail-status', '42'], /--fail-status must be an HTTP status/],
    [['echo', '--latency-ms=-3'], /--latency-ms must be a whole number/],
    [['echo', '--bogus'], /bogus/],
    [['echo', 'extra'], /no positional arguments/],
    [['client'], /exactly one URL/],
    [['client', 'not a url'], /is not a URL/],
    [['client', 'https://a/'], /cleartext only/],
    [['client', 'http://a/', '--h2c', '--grpc'], /exclude each other/],
    [['client', 'http://a/', '--header', 'novalue'], /--header must look like name:value/],
    [['client', 'http://a/', '-n', '0'], /-n must be a whole number/],
    [['tcp-client', 'h', '0', 'm'], /port must be a whole number between 1/],
    [['tcp-client', 'h'], /needs <host> <port> <message>/],
  ];
  for (const [argv, re] of cases) t.throws(() => parseDemoArgs(argv), re, argv.join(' '));
  t.end();
});
