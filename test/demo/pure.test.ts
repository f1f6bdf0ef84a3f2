import t from 'tap';
import { applyBehaviourPatch, DEFAULT_BEHAVIOUR, grpcStatusForHttp, planRequest } from '../../lab/demo/behaviour.ts';
import { sniffProtocol, H2_PREFACE } from '../../lab/demo/protocol-sniff.ts';
import { decodeGrpcMessages, encodeGrpcMessage } from '../../lab/demo/grpc-framing.ts';
import { bytesPathSize, fixedBody } from '../../lab/demo/bytes-cache.ts';
import { identityFromEnv } from '../../lab/demo/identity.ts';
import { percentile, SummaryBuilder } from '../../lab/demo/summary.ts';

const seq = (...xs: number[]) => { let i = 0; return () => xs[i++ % xs.length]!; };

t.test('fail rate fails exactly the requests whose random draw is below it', (t) => {
  const b = { ...DEFAULT_BEHAVIOUR, failRate: 0.25, failStatus: 502 };
  const rnd = seq(0.1, 0.3, 0.24, 0.9);
  const out = [1, 2, 3, 4].map(() => planRequest(b, {}, rnd).failStatus);
  t.same(out, [502, undefined, 502, undefined]);
  t.equal(planRequest(DEFAULT_BEHAVIOUR, {}, () => { throw new Error('random must not be drawn at rate 0'); }).failStatus, undefined);
  t.end();
});

t.test('per-request headers override the switches; 200 exempts one request', (t) => {
  const b = { failRate: 1, failStatus: 503, latencyMs: 40 };
  t.same(planRequest(b, { 'x-demo-fail-status': '429', 'x-demo-delay-ms': '5' }, () => 0), { delayMs: 5, failStatus: 429 });
  t.same(planRequest(b, { 'x-demo-fail-status': '200' }, () => 0), { delayMs: 40, failStatus: undefined });
  t.throws(() => planRequest(b, { 'x-demo-delay-ms': 'soon' }, () => 0), /x-demo-delay-ms must be a whole number/);
  t.throws(() => planRequest(b, { 'x-demo-fail-status': '999' }, () => 0), /x-demo-fail-status must be an HTTP status/);
  t.end();
});

t.test('config patch validates each key and keeps omitted ones', (t) => {
  const b = applyBehaviourPatch(DEFAULT_BEHAVIOUR, { failRate: 0.5 });
  t.same(b, { failRate: 0.5, failStatus: 503, latencyMs: 0 });
  t.same(applyBehaviourPatch(b, { latencyMs: 20, failStatus: 500 }), { failRate: 0.5, failStatus: 500, latencyMs: 20 });
  t.throws(() => applyBehaviourPatch(b, { failrate: 1 }), /unknown demo config key "failrate"/);
  t.throws(() => applyBehaviourPatch(b, { failRate: 2 }), /failRate must be a number between 0 and 1/);
  t.throws(() => applyBehaviourPatch(b, { latencyMs: -1 }), /latencyMs must be a whole number/);
  t.throws(() => applyBehaviourPatch(b, [1]), /must be a JSON object/);
  t.end();
});

t.test('injected HTTP failures map to the gRPC status retry policies look for', (t) => {
  t.equal(grpcStatusForHttp(503), 14);
  t.equal(grpcStatusForHttp(504), 4);
  t.equal(grpcStatusForHttp(500), 13);
  t.equal(grpcStatusForHttp(418), 2);
  t.end();
});

t.test('sniffing waits while the bytes could still be the HTTP/2 preface', (t) => {
  t.equal(sniffProtocol(Buffer.from('P')), 'need-more');
  t.equal(sniffProtocol(Buffer.from('POST / HTTP/1.1')), 'http1');
  t.equal(sniffProtocol(H2_PREFACE.subarray(0, 10)), 'need-more');
  t.equal(sniffProtocol(Buffer.concat([H2_PREFACE, Buffer.from([0, 0, 0])])), 'h2');
  t.equal(sniffProtocol(Buffer.from([0xff, 0x00])), 'http1');
  t.end();
});

t.test('gRPC framing round-trips and rejects truncation and compression', (t) => {
  const two = Buffer.concat([encodeGrpcMessage(Buffer.from('{"a":1}')), encodeGrpcMessage(Buffer.alloc(0))]);
  t.same(decodeGrpcMessages(two).map((b) => b.toString()), ['{"a":1}', '']);
  t.throws(() => decodeGrpcMessages(two.subarray(0, 8)), /declares 7 bytes but the body ends early/);
  t.throws(() => decodeGrpcMessages(Buffer.from([0, 0, 0])), /ends inside a message prefix/);
  t.throws(() => decodeGrpcMessages(Buffer.from([1, 0, 0, 0, 0])), /compressed/);
  t.end();
});

t.test('fixed bodies have the exact size asked for', (t) => {
  t.equal(fixedBody(1024).length, 1024);
  t.equal(fixedBody(1024), fixedBody(1024), 'built once');
  t.equal(bytesPathSize('/bytes/1024'), 1024);
  t.equal(bytesPathSize('/bytes/abc'), undefined);
  t.equal(bytesPathSize('/other'), undefined);
  t.throws(() => fixedBody(-1), /body size must be/);
  t.end();
});

t.test('identity comes from the lab env with usable defaults', (t) => {
  t.same(identityFromEnv({ POD_NAME: 'backend-v2-1', POD_NAMESPACE: 'demo', APP: 'backend', APP_VERSION: 'v2', NODE_NAME: 'node-2' }, 'h'),
    { pod: 'backend-v2-1', namespace: 'demo', app: 'backend', version: 'v2', node: 'node-2' });
  t.same(identityFromEnv({ POD_NAME: '' }, 'myhost'), { pod: 'myhost', namespace: 'default', app: 'unknown', version: 'unknown', node: 'unknown' });
  t.end();
});

t.test('summary counts statuses, pods and errors and computes nearest-rank percentiles', (t) => {
  t.equal(percentile([], 50), 0);
  const xs = Array.from({ length: 100 }, (_, i) => i + 1);
  t.equal(percentile(xs, 50), 50);
  t.equal(percentile(xs, 99), 99);
  t.equal(percentile(xs, 100), 100);
  const s = new SummaryBuilder();
  s.ok({ status: '200', pod: 'a', version: 'v1', latencyMs: 1 });
  s.ok({ status: '503', pod: 'b', version: 'v2', latencyMs: 3 });
  s.ok({ status: '200', pod: 'a', version: 'v1', latencyMs: 2 });
  s.error(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }));
  const r = s.build({ url: 'http://x/', mode: 'http1', requests: 4 }, 100);
  t.same(r.statuses, { 200: 2, 503: 1 });
  t.same(r.pods, { a: 2, b: 1 });
  t.same(r.errors, { ECONNREFUSED: 1 });
  t.match(r, { completed: 3, latencyMs: { p50: 2, max: 3, mean: 2 }, rps: 30 });
  t.end();
});
