/**
 * HTTP/2 (RFC 9113) frame constants and an allocation-light frame writer.
 *
 * Frames are appended to one growable buffer; the connection swaps between two
 * such buffers so a batch can be written to the transport while the next one
 * is being built, without allocating per frame.
 */
import type { BufferPool } from "../net/buffer_pool.ts";

/** Frame types (RFC 9113 §6). */
export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

/** Frame flags (their meaning depends on the frame type). */
export const Flag = {
  END_STREAM: 0x1,
  ACK: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
  PRIORITY: 0x20,
} as const;

/** Error codes (RFC 9113 §7). */
export const ErrorCode = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  SETTINGS_TIMEOUT: 0x4,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  CONNECT_ERROR: 0xa,
  ENHANCE_YOUR_CALM: 0xb,
  INADEQUATE_SECURITY: 0xc,
  HTTP_1_1_REQUIRED: 0xd,
} as const;

const ERROR_NAMES: string[] = [];
for (const [name, code] of Object.entries(ErrorCode)) ERROR_NAMES[code] = name;

/** An error code's RFC 9113 name (`PROTOCOL_ERROR`); unknown codes as hex (`0xff`). */
export function errorCodeName(code: number): string {
  return ERROR_NAMES[code] ?? "0x" + code.toString(16);
}

/** SETTINGS parameters (RFC 9113 §6.5.2, RFC 8441 §3). */
export const SettingId = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
  ENABLE_CONNECT_PROTOCOL: 0x8,
} as const;

/** The client connection preface (RFC 9113 §3.4). */
export const PREFACE: Uint8Array = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** Size of the fixed frame header. */
export const FRAME_HEADER_SIZE = 9;
/** SETTINGS_MAX_FRAME_SIZE default and minimum. */
export const DEFAULT_MAX_FRAME_SIZE = 16384;
/** SETTINGS_MAX_FRAME_SIZE maximum. */
export const MAX_MAX_FRAME_SIZE = 16777215;
/** Largest flow-control window (2^31-1). */
export const MAX_WINDOW = 0x7fffffff;
/** Initial flow-control window before any SETTINGS / WINDOW_UPDATE. */
export const DEFAULT_WINDOW = 65535;

const EMPTY = new Uint8Array(0);

/**
 * Appends encoded frames to a growable buffer. The buffer is taken (from a
 * pool, when one is given) by the first frame and given back by release()
 * once its bytes are written: an idle connection holds none.
 */
export class FrameWriter {
  /** The buffer; bytes [0, length) are pending output. */
  buf: Uint8Array = EMPTY;
  /** Number of pending bytes. */
  length = 0;

  /** `pool`: where the buffer comes from and goes back to (else one of 16 KiB is allocated). */
  constructor(private readonly pool: BufferPool | null = null) {}

  /** Makes room for n more bytes. */
  ensure(n: number): void {
    const need = this.length + n;
    if (need <= this.buf.length) return;
    if (this.buf.length === 0 && this.pool !== null && need <= this.pool.size) {
      this.buf = this.pool.take();
      return;
    }
    let cap = Math.max(this.buf.length * 2, 16384);
    while (cap < need) cap *= 2;
    const b = new Uint8Array(cap);
    b.set(this.buf.subarray(0, this.length));
    if (this.pool !== null) this.pool.give(this.buf);
    this.buf = b;
  }

  /** Nothing pending and nothing of the buffer in use (no write in flight): it goes back to the pool. */
  release(): void {
    if (this.length !== 0 || this.buf === EMPTY) return;
    this.pool?.give(this.buf);
    this.buf = EMPTY;
  }

  /** Writes a 9-byte frame header; the caller has ensured room for it. */
  private header(len: number, type: number, flags: number, streamId: number): void {
    const b = this.buf;
    let p = this.length;
    b[p++] = len >>> 16;
    b[p++] = (len >>> 8) & 0xff;
    b[p++] = len & 0xff;
    b[p++] = type;
    b[p++] = flags;
    b[p++] = (streamId >>> 24) & 0x7f;
    b[p++] = (streamId >>> 16) & 0xff;
    b[p++] = (streamId >>> 8) & 0xff;
    b[p++] = streamId & 0xff;
    this.length = p;
  }

  private u32(v: number): void {
    const b = this.buf;
    const p = this.length;
    b[p] = v >>> 24;
    b[p + 1] = (v >>> 16) & 0xff;
    b[p + 2] = (v >>> 8) & 0xff;
    b[p + 3] = v & 0xff;
    this.length = p + 4;
  }

  /** A DATA frame carrying data[off, off+len). */
  data(streamId: number, endStream: boolean, data: Uint8Array, off: number, len: number): void {
    this.ensure(FRAME_HEADER_SIZE + len);
    this.header(len, FrameType.DATA, endStream ? Flag.END_STREAM : 0, streamId);
    if (len > 0) {
      this.buf.set(off === 0 && len === data.length ? data : data.subarray(off, off + len), this.length);
      this.length += len;
    }
  }

  /** A HEADERS frame, followed by CONTINUATION frames when the block exceeds maxFrameSize. */
  headers(streamId: number, block: Uint8Array, endStream: boolean, maxFrameSize: number): void {
    const total = block.length;
    const frames = total === 0 ? 1 : Math.ceil(total / maxFrameSize);
    this.ensure(total + frames * FRAME_HEADER_SIZE);
    let off = 0;
    let type: number = FrameType.HEADERS;
    do {
      const n = Math.min(total - off, maxFrameSize);
      const last = off + n === total;
      let flags = last ? Flag.END_HEADERS : 0;
      if (endStream && type === FrameType.HEADERS) flags |= Flag.END_STREAM;
      this.header(n, type, flags, streamId);
      this.buf.set(block.subarray(off, off + n), this.length);
      this.length += n;
      off += n;
      type = FrameType.CONTINUATION;
    } while (off < total);
  }

  /** RST_STREAM. */
  rstStream(streamId: number, code: number): void {
    this.ensure(13);
    this.header(4, FrameType.RST_STREAM, 0, streamId);
    this.u32(code);
  }

  /** SETTINGS from [id, value, id, value, ...]. */
  settings(pairs: number[]): void {
    const len = (pairs.length / 2) * 6;
    this.ensure(FRAME_HEADER_SIZE + len);
    this.header(len, FrameType.SETTINGS, 0, 0);
    for (let i = 0; i < pairs.length; i += 2) {
      const p = this.length;
      this.buf[p] = pairs[i] >>> 8;
      this.buf[p + 1] = pairs[i] & 0xff;
      this.length = p + 2;
      this.u32(pairs[i + 1]);
    }
  }

  /** SETTINGS with ACK. */
  settingsAck(): void {
    this.ensure(FRAME_HEADER_SIZE);
    this.header(0, FrameType.SETTINGS, Flag.ACK, 0);
  }

  /** PING (8 opaque bytes from payload[off]). */
  ping(ack: boolean, payload: Uint8Array, off: number): void {
    this.ensure(17);
    this.header(8, FrameType.PING, ack ? Flag.ACK : 0, 0);
    this.buf.set(payload.subarray(off, off + 8), this.length);
    this.length += 8;
  }

  /** GOAWAY. */
  goaway(lastStreamId: number, code: number, debug: Uint8Array = EMPTY): void {
    this.ensure(17 + debug.length);
    this.header(8 + debug.length, FrameType.GOAWAY, 0, 0);
    this.u32(lastStreamId & 0x7fffffff);
    this.u32(code);
    this.buf.set(debug, this.length);
    this.length += debug.length;
  }

  /** WINDOW_UPDATE. */
  windowUpdate(streamId: number, increment: number): void {
    this.ensure(13);
    this.header(4, FrameType.WINDOW_UPDATE, 0, streamId);
    this.u32(increment & 0x7fffffff);
  }

  /** Raw bytes (e.g. the client preface). */
  raw(bytes: Uint8Array): void {
    this.ensure(bytes.length);
    this.buf.set(bytes, this.length);
    this.length += bytes.length;
  }
}
