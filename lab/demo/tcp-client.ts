/** A one-shot TCP client: writes a message, half-closes, returns everything that comes back. */
import net from 'node:net';
import { RondoError, errorMessage } from '../../common/errors.ts';

/** Sends `message` to host:port, half-closes, and resolves with the reply once the peer closes. */
export function tcpExchange(host: string, port: number, message: Buffer | string, timeoutMs = 5_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const sock = net.connect({ host, port, allowHalfOpen: true, noDelay: true });
    const fail = (why: string): void => {
      sock.destroy();
      reject(new RondoError('RONDO_E_DEMO_TCP', `tcp-client ${host}:${port}: ${why}`));
    };
    sock.setTimeout(timeoutMs, () => fail(`no answer within ${timeoutMs} ms (is the server up and echoing?)`));
    sock.on('connect', () => sock.end(message));
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('end', () => { sock.destroy(); resolve(Buffer.concat(chunks)); });
    sock.on('error', (e) => fail(errorMessage(e)));
  });
}
