import t from 'tap';
import net from 'node:net';
import {
  checkOrigDstSupport,
  decodeSockaddrIn,
  decodeSockaddrIn6,
  originalDestination,
  socketFd,
  OrigDstError,
} from '../../node-agent/orig-dst.ts';

t.test('start-up self-test passes on this host', (t) => {
  t.doesNotThrow(() => checkOrigDstSupport());
  t.end();
});

t.test('decodes sockaddr_in: port big-endian at 2, address at 4..7', (t) => {
  const b = Buffer.alloc(16);
  b.writeUInt16LE(2, 0);
  b.writeUInt16BE(8080, 2);
  b.set([10, 96, 0, 7], 4);
  t.same(decodeSockaddrIn(b), { ip: '10.96.0.7', port: 8080, family: 4 });
  b.writeUInt16LE(10, 0);
  t.throws(() => decodeSockaddrIn(b), OrigDstError);
  t.throws(() => decodeSockaddrIn(Buffer.alloc(4)), /too short/);
  t.end();
});

t.test('decodes sockaddr_in6 into the canonical compressed form', (t) => {
  const b = Buffer.alloc(28);
  b.writeUInt16LE(10, 0);
  b.writeUInt16BE(443, 2);
  const words = [0xfd00, 0, 0, 0, 0, 0, 0, 0x12];
  words.forEach((w, i) => b.writeUInt16BE(w, 8 + i * 2));
  t.same(decodeSockaddrIn6(b), { ip: 'fd00::12', port: 443, family: 6 });
  const w2 = [0x2001, 0xdb8, 0, 1, 0, 0, 0, 1];
  w2.forEach((w, i) => b.writeUInt16BE(w, 8 + i * 2));
  t.equal(decodeSockaddrIn6(b).ip, '2001:db8:0:1::1');
  const w3 = [1, 2, 3, 4, 5, 6, 7, 8];
  w3.forEach((w, i) => b.writeUInt16BE(w, 8 + i * 2));
  t.equal(decodeSockaddrIn6(b).ip, '1:2:3:4:5:6:7:8');
  t.end();
});

t.test('a connection that was not NATed has no original destination', async (t) => {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const { port } = server.address() as net.AddressInfo;
  const client = net.connect(port, '127.0.0.1');
  t.teardown(() => client.destroy());
  const s = await accepted;
  t.teardown(() => s.destroy());
  t.ok(socketFd(s) > 0);
  t.equal(originalDestination(s), undefined);
  s.destroy();
  await new Promise((r) => s.once('close', r));
  t.throws(() => socketFd(s), /no file descriptor/);
});
