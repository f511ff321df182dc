/**
 * HTTP/3 framing (RFC 9114 §7): frame, stream and error codes, frame and
 * SETTINGS encoding, and a buffered reader that pulls frames off a QUIC
 * stream without copying DATA payloads more than once.
 */
import { concat } from "../net/bytes.ts";
import { encodeVarint, readVarint, varintLength, writeVarint } from "./varint.ts";

/** Frame types (RFC 9114 §7.2, §11.2.1). */
export const FrameType = {
  DATA: 0x00,
  HEADERS: 0x01,
  CANCEL_PUSH: 0x03,
  SETTINGS: 0x04,
  PUSH_PROMISE: 0x05,
  GOAWAY: 0x07,
  MAX_PUSH_ID: 0x0d,
} as const;

/** HTTP/2 frame types that have no HTTP/3 equivalent: receiving one is H3_FRAME_UNEXPECTED (§7.2.8). */
export const RESERVED_H2_FRAME_TYPES: ReadonlySet<number> = new Set([0x02, 0x06, 0x08, 0x09]);

/** Unidirectional stream types (RFC 9114 §6.2, RFC 9204 §4.2). */
export const StreamType = {
  CONTROL: 0x00,
  PUSH: 0x01,
  QPACK_ENCODER: 0x02,
  QPACK_DECODER: 0x03,
} as const;

/** SETTINGS identifiers (RFC 9114 §7.2.4.1, RFC 9204 §5). */
export const Setting = {
  QPACK_MAX_TABLE_CAPACITY: 0x01,
  MAX_FIELD_SECTION_SIZE: 0x06,
  QPACK_BLOCKED_STREAMS: 0x07,
  ENABLE_CONNECT_PROTOCOL: 0x08,
  H3_DATAGRAM: 0x33,
} as const;

/** HTTP/2 setting ids that are an error in HTTP/3 SETTINGS (§7.2.4.1). */
export const RESERVED_H2_SETTINGS: ReadonlySet<number> = new Set([0x02, 0x03, 0x04, 0x05]);

/** Application error codes (RFC 9114 §8.1, RFC 9204 §6). */
export const H3Error = {
  NO_ERROR: 0x100,
  GENERAL_PROTOCOL_ERROR: 0x101,
  INTERNAL_ERROR: 0x102,
  STREAM_CREATION_ERROR: 0x103,
  CLOSED_CRITICAL_STREAM: 0x104,
  FRAME_UNEXPECTED: 0x105,
  FRAME_ERROR: 0x106,
  EXCESSIVE_LOAD: 0x107,
  ID_ERROR: 0x108,
  SETTINGS_ERROR: 0x109,
  MISSING_SETTINGS: 0x10a,
  REQUEST_REJECTED: 0x10b,
  REQUEST_CANCELLED: 0x10c,
  REQUEST_INCOMPLETE: 0x10d,
  MESSAGE_ERROR: 0x10e,
  CONNECT_ERROR: 0x10f,
  VERSION_FALLBACK: 0x110,
  QPACK_DECOMPRESSION_FAILED: 0x200,
  QPACK_ENCODER_STREAM_ERROR: 0x201,
  QPACK_DECODER_STREAM_ERROR: 0x202,
} as const;

/** An HTTP/3 protocol error with the code to reset the stream or close the connection with. */
export class H3ProtocolError extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
    this.name = "H3ProtocolError";
  }
}

/** Frame header (type + length) for a payload of `length` bytes. */
export function frameHeader(type: number, length: number): Uint8Array {
  const out = new Uint8Array(varintLength(type) + varintLength(length));
  writeVarint(out, writeVarint(out, 0, type), length);
  return out;
}

/** A whole frame: header and payload in one buffer (one QUIC write). */
export function encodeFrame(type: number, payload: Uint8Array): Uint8Array {
  const head = frameHeader(type, payload.length);
  const out = new Uint8Array(head.length + payload.length);
  out.set(head);
  out.set(payload, head.length);
  return out;
}

/** A SETTINGS frame from identifier/value pairs. */
export function encodeSettings(settings: ReadonlyMap<number, number>): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const [id, v] of settings) parts.push(encodeVarint(id), encodeVarint(v));
  return encodeFrame(FrameType.SETTINGS, concat(parts));
}

/** Parses a SETTINGS payload; duplicates and HTTP/2-only ids are H3_SETTINGS_ERROR (§7.2.4). */
export function decodeSettings(payload: Uint8Array): Map<number, number> {
  const out = new Map<number, number>();
  let pos = 0;
  while (pos < payload.length) {
    const id = readVarint(payload, pos);
    const v = id === null ? null : readVarint(payload, id.next);
    if (id === null || v === null) throw new H3ProtocolError(H3Error.FRAME_ERROR, "truncated SETTINGS");
    if (out.has(id.value)) throw new H3ProtocolError(H3Error.SETTINGS_ERROR, `duplicate setting ${id.value}`);
    if (RESERVED_H2_SETTINGS.has(id.value)) {
      throw new H3ProtocolError(H3Error.SETTINGS_ERROR, `HTTP/2 setting ${id.value} in HTTP/3`);
    }
    out.set(id.value, v.value);
    pos = v.next;
  }
  return out;
}

/** A GOAWAY frame carrying the first request stream id that will not be processed. */
export function encodeGoaway(id: number): Uint8Array {
  return encodeFrame(FrameType.GOAWAY, encodeVarint(id));
}

/** Decodes a single-varint payload (GOAWAY, CANCEL_PUSH, MAX_PUSH_ID). */
export function decodeSingleVarint(payload: Uint8Array): number {
  const v = readVarint(payload, 0);
  if (v === null || v.next !== payload.length) {
    throw new H3ProtocolError(H3Error.FRAME_ERROR, "bad frame payload");
  }
  return v.value;
}

/** Where a StreamReader pulls its bytes from (a QUIC receive stream, or an array in tests). */
export type ChunkSource = () => Promise<Uint8Array | null>;

/**
 * Buffered reads off a byte stream: varints, exact byte counts, and "up to n"
 * reads that hand out received chunks as they are (DATA payloads stream through).
 */
export class StreamReader {
  private buf: Uint8Array = new Uint8Array(0);
  private pos = 0;
  private eof = false;
  private inflight: Promise<boolean> | null = null;

  constructor(private pull: ChunkSource) {}

  private get available(): number {
    return this.buf.length - this.pos;
  }

  /**
   * Pulls one more chunk; false at the end of the stream. Single-flight: a peek
   * (atEnd) and a read may wait at once, and chunks must be appended in order.
   */
  private more(): Promise<boolean> {
    return this.inflight ??= this.pullOnce().finally(() => this.inflight = null);
  }

  private async pullOnce(): Promise<boolean> {
    if (this.eof) return false;
    const c = await this.pull();
    if (c === null) {
      this.eof = true;
      return false;
    }
    if (this.available === 0) {
      this.buf = c;
      this.pos = 0;
    } else {
      // Only partial varints/headers get here: the copy is a few bytes plus the chunk.
      const b = new Uint8Array(this.available + c.length);
      b.set(this.buf.subarray(this.pos));
      b.set(c, this.available);
      this.buf = b;
      this.pos = 0;
    }
    return true;
  }

  /** True when the stream ended with no buffered bytes left. */
  async atEnd(): Promise<boolean> {
    while (this.available === 0) if (!(await this.more())) return true;
    return false;
  }

  /** The next varint, or null at a clean end of stream; a varint cut by the end is H3_FRAME_ERROR. */
  async varint(): Promise<number | null> {
    for (;;) {
      const v = readVarint(this.buf, this.pos);
      if (v !== null) {
        this.pos = v.next;
        return v.value;
      }
      const had = this.available;
      if (!(await this.more())) {
        if (had === 0) return null;
        throw new H3ProtocolError(H3Error.FRAME_ERROR, "stream ended inside a varint");
      }
    }
  }

  /** Exactly `n` bytes (a copy when they span chunks); the end of stream first is H3_FRAME_ERROR. */
  async exact(n: number): Promise<Uint8Array> {
    while (this.available < n) {
      if (!(await this.more())) throw new H3ProtocolError(H3Error.FRAME_ERROR, "stream ended inside a frame");
    }
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** Between 1 and `n` bytes (n > 0), as received; the end of stream first is H3_FRAME_ERROR. */
  async upTo(n: number): Promise<Uint8Array> {
    while (this.available === 0) {
      if (!(await this.more())) throw new H3ProtocolError(H3Error.FRAME_ERROR, "stream ended inside a frame");
    }
    const k = Math.min(n, this.available);
    const out = this.buf.subarray(this.pos, this.pos + k);
    this.pos += k;
    return out;
  }

  /** Discards `n` bytes. */
  async skip(n: number): Promise<void> {
    while (n > 0) n -= (await this.upTo(n)).length;
  }

  /** The next frame header, or null at a clean end of stream. */
  async frameHeader(): Promise<{ type: number; length: number } | null> {
    const type = await this.varint();
    if (type === null) return null;
    const length = await this.varint();
    if (length === null) throw new H3ProtocolError(H3Error.FRAME_ERROR, "stream ended inside a frame header");
    return { type, length };
  }
}
