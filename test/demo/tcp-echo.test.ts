import t from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { TcpEchoServer } from '../../lab/demo/tcp-echo.ts';
import { tcpExchange } from '../../lab/demo/tcp-client.ts';
import { memLogger } from './helpers.ts';

async function start(t: { teardown(fn: () => unknown): void }): Promise<TcpEchoServer> {
  const s = await TcpEchoServer.create({ port: 0, host: '127.0.0.1', log: memLogger() });
  t.teardown(() => s.close(100));
  return s;
}

t.test('tcp-client gets back exactly what it sent, after its half-close', async (t) => {
  const s = await start(t);
  t.equal((await tcpExchange('127.0.0.1', s.port, 'hello mesh')).toString(), 'hello mesh');
  const big = Buffer.alloc(3 * 1024 * 1024, 7);
  t.ok((await tcpExchange('127.0.0.1', s.port, big)).equals(big), '3 MiB echoed intact');
});

t.test('after the client half-closes, the server still sends the echo, then FIN', async (t) => {
  const s = await start(t);
  const sock = net.connect({ port: s.port, host: '127.0.0.1', allowHalfOpen: true });
  await once(sock, 'connect');
  sock.write('first ');
  const chunks: Buffer[] = [];
  sock.on('data', (c: Buffer) => chunks.push(c));
  sock.end('last');
  await once(sock, 'end');
  t.equal(Buffer.concat(chunks).toString(), 'first last');
  sock.destroy();
});

t.test('tcp-client errors name the target and the likely cause', async (t) => {
  const s = await start(t);
  const port = s.port;
  await s.close();
  await t.rejects(tcpExchange('127.0.0.1', port, 'x'), { code: 'RONDO_E_DEMO_TCP', message: new RegExp(`127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`) });
  // A server that accepts but never answers: the timeout fires.
  const mute = net.createServer({ allowHalfOpen: true }, () => {});
  mute.listen(0, '127.0.0.1');
  await once(mute, 'listening');
  t.teardown(() => { mute.close(); });
  const mp = (mute.address() as net.AddressInfo).port;
  await t.rejects(tcpExchange('127.0.0.1', mp, 'x', 50), { message: /no answer within 50 ms/ });
});

t.test('close() is idempotent and ends open connections', async (t) => {
  const s = await TcpEchoServer.create({ port: 0, host: '127.0.0.1', log: memLogger() });
  const sock = net.connect(s.port, '127.0.0.1');
  await once(sock, 'connect');
  const ended = once(sock, 'end');
  await Promise.all([s.close(1000), s.close(1000)]);
  await ended;
  t.pass('client saw FIN');
  sock.destroy();
});
