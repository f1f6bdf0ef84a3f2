// Large chunks are coalesced into fewer socket writes: every byte still arrives, in order,
// and a FIN right after a burst still follows the data.
import t from 'tap';
import net from 'node:net';
import { createHash } from 'node:crypto';
import { pump } from '../../common/hbone-pump.ts';

t.test('5 MiB in 64 KiB chunks then FIN: same bytes, same order, then the end; counts match', async (t) => {
  // client -> [proxy: pump(accepted, upstream)] -> sink
  const received: Buffer[] = [];
  let sinkEnded!: () => void;
  const sinkDone = new Promise<void>((r) => { sinkEnded = r; });
  const sink = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('data', (d: Buffer) => received.push(d));
    s.on('end', () => { s.end('bye'); sinkEnded(); });
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  let result: Promise<{ aToB: number; bToA: number; error?: Error }> | undefined;
  const proxy = net.createServer({ allowHalfOpen: true }, (a) => {
    const b = net.connect({ host: '127.0.0.1', port: (sink.address() as net.AddressInfo).port, allowHalfOpen: true });
    result = pump(a, b);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  t.teardown(() => { proxy.close(); sink.close(); });

  const total = 5 * 1024 * 1024;
  const data = Buffer.alloc(total);
  for (let i = 0; i < total; i++) data[i] = (i * 7 + (i >> 13)) & 0xff;
  const c = net.connect({ host: '127.0.0.1', port: (proxy.address() as net.AddressInfo).port, allowHalfOpen: true });
  let reply = '';
  c.on('data', (d: Buffer) => { reply += d.toString(); });
  const replyEnded = new Promise<void>((r) => c.on('end', () => r()));
  for (let off = 0; off < total; off += 64 * 1024) c.write(data.subarray(off, off + 64 * 1024));
  c.end();
  await sinkDone;
  await replyEnded;
  c.destroy();
  const got = Buffer.concat(received);
  t.equal(got.length, total);
  t.equal(createHash('sha256').update(got).digest('hex'), createHash('sha256').update(data).digest('hex'), 'bytes intact and in order');
  t.equal(reply, 'bye', 'the reply direction stays open after the FIN and then ends');
  const r = await result!;
  t.equal(r.aToB, total);
  t.equal(r.bToA, 3);
  t.equal(r.error, undefined);
});
