/** Raw TCP echo: every byte comes back; a client's FIN is answered with FIN after the echo. */
import net from 'node:net';
import type { Logger } from '../../common/log.ts';
import { RondoError } from '../../common/errors.ts';

/** Options of TcpEchoServer.create(). */
export interface TcpEchoOptions { port: number; host?: string; log: Logger }

/** A running TCP echo server; `close()` is idempotent and ends open connections. */
export class TcpEchoServer {
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  readonly #log: Logger;
  #closing: Promise<void> | undefined;

  private constructor(o: TcpEchoOptions) {
    this.#log = o.log;
    // allowHalfOpen: a client that half-closes still gets the rest of its echo back.
    this.#server = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => {
      this.#sockets.add(s);
      s.once('close', () => this.#sockets.delete(s));
      s.on('error', (e) => { this.#log.debug('tcp echo connection error', { err: e.message }); s.destroy(); });
      s.pipe(s);
    });
  }

  /** Binds the port (fails loudly) and starts echoing. */
  static async create(o: TcpEchoOptions): Promise<TcpEchoServer> {
    const s = new TcpEchoServer(o);
    const host = o.host ?? '0.0.0.0';
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error): void => reject(new RondoError('RONDO_E_LISTEN',
        `demo tcp-echo cannot listen on ${host}:${o.port}: ${e.message} (is the port taken?)`, { cause: e }));
      s.#server.once('error', onError);
      s.#server.listen(o.port, host, () => { s.#server.off('error', onError); resolve(); });
    });
    s.#server.on('error', (e) => s.#log.error('listener error', { err: e }));
    return s;
  }

  /** The bound port. */
  get port(): number {
    const a = this.#server.address();
    return typeof a === 'object' && a !== null ? a.port : 0;
  }

  /** Stops accepting and half-closes open connections; destroys them after `drainMs`. */
  close(drainMs = 2_000): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      const timer = setTimeout(() => { for (const s of this.#sockets) s.destroy(); }, drainMs);
      timer.unref();
      this.#server.close(() => { clearTimeout(timer); resolve(); });
      for (const s of this.#sockets) s.end();
    });
    return this.#closing;
  }
}
