/** gRPC's 5-byte length-prefixed message framing, by hand: the demo needs no protobuf. */
import { InvalidInputError } from '../../common/errors.ts';

/** Largest message accepted (gRPC's own default receive limit). */
export const MAX_GRPC_MESSAGE = 4 * 1024 * 1024;

/** Frames one uncompressed message: flag byte 0, big-endian length, payload. */
export function encodeGrpcMessage(payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + payload.length);
  out[0] = 0;
  out.writeUInt32BE(payload.length, 1);
  payload.copy(out, 5);
  return out;
}

/** Splits a complete request body into messages; throws InvalidInputError on truncation or compression. */
export function decodeGrpcMessages(body: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  while (off < body.length) {
    if (body.length - off < 5) throw new InvalidInputError(`gRPC body ends inside a message prefix at byte ${off}`);
    const flag = body[off];
    const len = body.readUInt32BE(off + 1);
    if (flag !== 0) throw new InvalidInputError('compressed gRPC messages are not supported by the demo server: disable compression');
    if (len > MAX_GRPC_MESSAGE) throw new InvalidInputError(`gRPC message of ${len} bytes exceeds the ${MAX_GRPC_MESSAGE}-byte limit`);
    if (body.length - off - 5 < len) throw new InvalidInputError(`gRPC message at byte ${off} declares ${len} bytes but the body ends early`);
    out.push(body.subarray(off + 5, off + 5 + len));
    off += 5 + len;
  }
  return out;
}
