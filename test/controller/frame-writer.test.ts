import t from 'tap';
import { FrameWriter } from '../../controller/push/frame-writer.ts';
import type { FragmentSink } from '../../controller/push/frame-writer.ts';

/** A sink that completes writes only when the test says so (a slow socket). */
function slowSink() {
  const frames: { bytes: string; binary: boolean; fin: boolean }[] = [];
  const done: ((err?: Error) => void)[] = [];
  const sink: FragmentSink = { send: (data, o, cb) => { frames.push({ bytes: data.toString(), binary: o.binary, fin: o.fin }); done.push(cb); } };
  return { sink, frames, flush: (err?: Error): void => { done.shift()?.(err); } };
}

t.test('a big message goes out in fragments, one at a time; a message queued meanwhile waits its turn', (t) => {
  const s = slowSink();
  const w = new FrameWriter(s.sink, 4);
  w.send(Buffer.from('abcdefghij'), true);
  w.send(Buffer.from('xy'), false);
  t.same(s.frames, [{ bytes: 'abcd', binary: true, fin: false }], 'only one fragment before the socket took it');
  s.flush();
  s.flush();
  t.same(s.frames.map((f) => f.bytes), ['abcd', 'efgh', 'ij']);
  t.equal(s.frames[2]?.fin, true, 'last fragment ends the message');
  t.equal(w.pending, 2);
  s.flush();
  t.same(s.frames.at(-1), { bytes: 'xy', binary: false, fin: true }, 'the next message starts only after the first ended');
  s.flush();
  t.equal(w.pending, 0);
  t.end();
});

t.test('a failed write drops the rest (the socket is gone) and later sends are ignored', (t) => {
  const s = slowSink();
  const w = new FrameWriter(s.sink, 4);
  w.send(Buffer.from('abcdefgh'), true);
  w.send(Buffer.from('more'), true);
  s.flush(new Error('EPIPE'));
  w.send(Buffer.from('late'), true);
  t.equal(s.frames.length, 1);
  t.equal(w.pending, 0);
  t.end();
});
