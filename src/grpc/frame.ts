/**
 * gRPC message framing (the "Length-Prefixed-Message" of gRPC over HTTP/2):
 * a flag byte (bit 0: compressed; gRPC-Web's trailer frame sets 0x80), a
 * 4-byte big-endian length, then the payload. gRPC-Web uses the same frames.
 *
 * @module
 */

/** Bytes before a frame's payload. */
export const FRAME_PREFIX = 5;

/** A gRPC message frame: flag byte, 4-byte big-endian length, payload. */
export function grpcFrame(payload: Uint8Array, flags = 0): Uint8Array {
  const out = new Uint8Array(FRAME_PREFIX + payload.length);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, payload.length);
  out.set(payload, FRAME_PREFIX);
  return out;
}

/**
 * The payload length of the frame starting at `o` in `b` (its flags are
 * `b[o]`), or -1 when the 5-byte prefix is not all there yet. The payload
 * itself may still be incomplete: it ends at `o + 5 + length`.
 */
export function grpcFrameLength(b: Uint8Array, o: number): number {
  if (b.length - o < FRAME_PREFIX) return -1;
  return ((b[o + 1] << 24) | (b[o + 2] << 16) | (b[o + 3] << 8) | b[o + 4]) >>> 0;
}
