/**
 * The original destination of a captured connection: `getsockopt(SOL_IP, SO_ORIGINAL_DST)`
 * (and `SOL_IPV6, IP6T_SO_ORIGINAL_DST`) through koffi, because Node has no API for it.
 * The only place that touches a socket's file descriptor.
 */
import { isIPv4 } from 'node:net';
import type { Socket } from 'node:net';
import { RondoError, errorMessage } from '../common/errors.ts';
import { stripV4Mapped } from '../common/ip.ts';
import { libcErrno, libcFunction } from '../common/libc.ts';

const SOL_IP = 0;
const SOL_IPV6 = 41;
/** Same value for IPv4 (SO_ORIGINAL_DST) and IPv6 (IP6T_SO_ORIGINAL_DST). */
const SO_ORIGINAL_DST = 80;
const ENOENT = 2;
const AF_INET = 2;
const AF_INET6 = 10;
const SOCKADDR_IN6_LEN = 28;

/** Where a connection was going before iptables REDIRECT rewrote it. */
export interface OriginalDestination {
  ip: string;
  port: number;
  family: 4 | 6;
}

/** The original destination could not be read (not a NAT error: a broken socket or FFI). */
export class OrigDstError extends RondoError {
  constructor(message: string, options?: ErrorOptions) {
    super('RONDO_E_ORIG_DST', message, options);
    this.name = 'OrigDstError';
  }
}

type GetSockOpt = (fd: number, level: number, name: number, buf: Buffer, len: Buffer) => number;
interface Ffi { getsockopt: GetSockOpt; errno: () => number }

let ffi: Ffi | undefined;

function loadFfi(): Ffi {
  if (ffi !== undefined) return ffi;
  try {
    // Plain pointers to Buffers: koffi passes their memory as is. With `_Out_ uint8_t *` and an
    // `_Inout_` array it copied both in and out on every call (2.6 instead of 1.0 µs per call).
    ffi = { getsockopt: libcFunction<GetSockOpt>('int getsockopt(int, int, int, void *buf, void *len)'), errno: libcErrno };
    return ffi;
  } catch (e) {
    throw new OrigDstError(
      `cannot load getsockopt from libc.so.6 through koffi (${errorMessage(e)}): ` +
        'the node agent needs Linux with glibc and the koffi package (node_modules/koffi) with its prebuilt binary',
      { cause: e },
    );
  }
}

/**
 * Checks once at start-up that the FFI call works: loads koffi and calls getsockopt on an
 * invalid fd, which must fail with EBADF (proving the call reached the kernel).
 */
export function checkOrigDstSupport(): void {
  if (process.platform !== 'linux') {
    throw new OrigDstError(`SO_ORIGINAL_DST needs Linux (iptables REDIRECT); this is ${process.platform}`);
  }
  const f = loadFfi();
  const rc = f.getsockopt(-1, SOL_IP, SO_ORIGINAL_DST, Buffer.alloc(16), lenBuf(16));
  const errno = f.errno();
  if (rc !== -1 || errno !== 9) {
    throw new OrigDstError(`getsockopt self-test returned rc=${rc} errno=${errno}, expected -1/EBADF: the FFI binding is broken`);
  }
}

/**
 * The file descriptor of a connected TCP socket. Relies on the internal `_handle.fd`
 * (libuv's TCPWrap): wrapped here so that nothing else depends on it.
 */
export function socketFd(socket: Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) {
    throw new OrigDstError('socket has no file descriptor (already closed, or not a TCP socket)');
  }
  return fd;
}

/** Decodes a `struct sockaddr_in` (port big-endian at offset 2, address at 4..7). */
export function decodeSockaddrIn(buf: Buffer): OriginalDestination {
  if (buf.length < 8) throw new OrigDstError(`sockaddr_in too short: ${buf.length} bytes`);
  const fam = buf.readUInt16LE(0);
  if (fam !== AF_INET) throw new OrigDstError(`expected AF_INET in sockaddr_in, got family ${fam}`);
  return { ip: `${buf[4]}.${buf[5]}.${buf[6]}.${buf[7]}`, port: buf.readUInt16BE(2), family: 4 };
}

/** Decodes a `struct sockaddr_in6` (port at 2, flowinfo at 4, address at 8..23). */
export function decodeSockaddrIn6(buf: Buffer): OriginalDestination {
  if (buf.length < 24) throw new OrigDstError(`sockaddr_in6 too short: ${buf.length} bytes`);
  const fam = buf.readUInt16LE(0);
  if (fam !== AF_INET6) throw new OrigDstError(`expected AF_INET6 in sockaddr_in6, got family ${fam}`);
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(8 + i * 2).toString(16));
  return { ip: compressIpv6(groups), port: buf.readUInt16BE(2), family: 6 };
}

// Canonical RFC 5952 form, so the result compares equal to what Node reports for addresses.
function compressIpv6(groups: string[]): string {
  let bestStart = -1, bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i >= 2) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  if (bestStart < 0) return groups.join(':');
  return `${groups.slice(0, bestStart).join(':')}::${groups.slice(bestStart + bestLen).join(':')}`;
}

function lenBuf(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n, 0);
  return b;
}

/**
 * The original destination of an accepted socket. A connection that conntrack tracks but
 * did not NAT reports its own local address; `undefined` means conntrack has no entry for
 * it (no nat table in this namespace): the caller then uses `socket.localAddress`.
 * Throws OrigDstError on any other failure.
 */
export function originalDestination(socket: Socket): OriginalDestination | undefined {
  const f = loadFfi();
  const fd = socketFd(socket);
  // The peer's family is the socket's family; remoteAddress is read (and cached by Node) for
  // the access log anyway, while localAddress would cost one more getsockname per connection.
  const peer = socket.remoteAddress ?? '';
  // A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d; those are IPv4 conntrack entries.
  const v4 = isIPv4(stripV4Mapped(peer));
  const buf = Buffer.alloc(v4 ? 16 : SOCKADDR_IN6_LEN);
  const rc = f.getsockopt(fd, v4 ? SOL_IP : SOL_IPV6, SO_ORIGINAL_DST, buf, lenBuf(buf.length));
  if (rc !== 0) {
    const errno = f.errno();
    if (errno === ENOENT) return undefined;
    throw new OrigDstError(
      `getsockopt(SO_ORIGINAL_DST) failed with errno ${errno} on a connection from ` +
        `${socket.remoteAddress}:${socket.remotePort}: is the nf_conntrack module loaded?`,
    );
  }
  return v4 ? decodeSockaddrIn(buf) : decodeSockaddrIn6(buf);
}
