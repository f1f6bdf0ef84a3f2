/** Tells HTTP/2 prior-knowledge connections from HTTP/1.x ones by their first bytes. */

/** The fixed client connection preface every HTTP/2 cleartext (prior knowledge) client sends first. */
export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** Outcome of looking at a connection's first bytes. */
export type SniffResult = 'h2' | 'http1' | 'need-more';

/**
 * Classifies the bytes received so far: 'need-more' while they are a strict prefix of the
 * HTTP/2 preface (e.g. "P" could still become "POST" or "PRI"), else the protocol.
 * Anything that is not HTTP/2 goes to the HTTP/1 parser, which answers garbage with 400.
 */
export function sniffProtocol(buf: Buffer): SniffResult {
  const n = Math.min(buf.length, H2_PREFACE.length);
  if (buf.compare(H2_PREFACE, 0, n, 0, n) !== 0) return 'http1';
  return n === H2_PREFACE.length ? 'h2' : 'need-more';
}
