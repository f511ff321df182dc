/**
 * A raw HTTP/2 client for conformance tests (tests/h2_conformance_test.ts): frames go out exactly as
 * built (any type, flags, length or stream id; header blocks by src/http2's HpackEncoder, or bytes by
 * hand for broken ones), and what the server sends back is read frame by frame (header blocks decoded
 * by src/http2's HpackDecoder); nothing is acknowledged or answered unless the test does it.
 */
import { ErrorCode, errorCodeName, Flag, FrameType, PREFACE } from "../src/http2/frame.ts";
import { HpackDecoder, HpackEncoder } from "../src/http2/hpack.ts";
import { field } from "../src/http2/fields.ts";
import { concat } from "../src/net/bytes.ts";

/** A frame as received. */
export interface Frame {
  type: number;
  flags: number;
  sid: number;
  payload: Uint8Array;
}

/** What reading produced: a frame, the end of the connection, or nothing in time. */
export type Event = Frame | "closed" | "timeout";

/** A request's fields: pseudo-headers for `method path` first, then `extra`. */
export function req(method: string, path: string, extra: string[] = []): string[] {
  return [":method", method, ":scheme", "http", ":path", path, ":authority", "127.0.0.1", ...extra];
}

/** A frame from its parts (any length, type, flags or stream id, reserved bit included). */
export function frame(
  type: number,
  flags: number,
  sid: number,
  payload: Uint8Array | number[] = [],
): Uint8Array {
  const p = payload instanceof Uint8Array ? payload : new Uint8Array(payload);
  const f = new Uint8Array(9 + p.length);
  f[0] = p.length >>> 16;
  f[1] = (p.length >>> 8) & 0xff;
  f[2] = p.length & 0xff;
  f[3] = type;
  f[4] = flags;
  new DataView(f.buffer).setUint32(5, sid >>> 0);
  f.set(p, 9);
  return f;
}

/** 32-bit big-endian words as bytes. */
export function u32s(...words: number[]): Uint8Array {
  const b = new Uint8Array(4 * words.length);
  const v = new DataView(b.buffer);
  words.forEach((w, i) => v.setUint32(4 * i, w >>> 0));
  return b;
}

/** A SETTINGS payload from [id, value] pairs. */
export function settings(...pairs: [number, number][]): Uint8Array {
  const b = new Uint8Array(6 * pairs.length);
  const v = new DataView(b.buffer);
  pairs.forEach(([id, value], i) => {
    v.setUint16(6 * i, id);
    v.setUint32(6 * i + 2, value >>> 0);
  });
  return b;
}

/** A frame's description for assertion messages. */
export function describe(e: Event): string {
  if (typeof e === "string") return e;
  const name = Object.entries(FrameType).find(([, t]) => t === e.type)?.[0] ??
    `type 0x${e.type.toString(16)}`;
  let s = `${name}(stream ${e.sid}, flags 0x${e.flags.toString(16)}, ${e.payload.length} bytes`;
  if (e.type === FrameType.GOAWAY && e.payload.length >= 8) {
    s += `, ${errorCodeName(word(e.payload, 4))}: ${new TextDecoder().decode(e.payload.subarray(8))}`;
  }
  if (e.type === FrameType.RST_STREAM && e.payload.length === 4) {
    s += `, ${errorCodeName(word(e.payload, 0))}`;
  }
  return s + ")";
}

/** The 32-bit word at `off`. */
export function word(b: Uint8Array, off: number): number {
  return new DataView(b.buffer, b.byteOffset).getUint32(off);
}

/** A RST_STREAM with an error code (RST_STREAM(NO_ERROR) only ends a request early, RFC 9113 8.1). */
function isError(f: Frame): boolean {
  return f.type === FrameType.RST_STREAM && word(f.payload, 0) !== ErrorCode.NO_ERROR;
}

/** A response as collected by {@linkcode RawH2.response}. */
export interface RawResponse {
  status: string;
  fields: string[];
  body: Uint8Array;
  trailers: string[] | null;
  /** The DATA frames' payload lengths, in order. */
  dataFrames: number[];
}

/** One raw HTTP/2 client connection. */
export class RawH2 {
  readonly enc = new HpackEncoder();
  readonly dec = new HpackDecoder();
  /** The server's SETTINGS (id → value) as received in the handshake. */
  readonly serverSettings = new Map<number, number>();
  /** Every event read so far (for assertion messages). */
  readonly seen: Event[] = [];
  private buf: Uint8Array = new Uint8Array(0);
  private readonly tmp = new Uint8Array(64 * 1024);
  private pending: Promise<number | null> | null = null;
  private eof = false;

  private constructor(readonly conn: Deno.TcpConn) {}

  /** Connects to 127.0.0.1:port (no bytes sent). */
  static async open(port: number): Promise<RawH2> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    return new RawH2(conn);
  }

  /** Writes all the bytes given, in one write. */
  async send(...parts: Uint8Array[]): Promise<void> {
    const all = concat(parts);
    for (let o = 0; o < all.length;) o += await this.conn.write(all.subarray(o));
  }

  /**
   * The client side of starting HTTP/2: preface and SETTINGS (`own`, empty by default); reads the
   * server's SETTINGS, acknowledges them, and waits for the server's ACK of ours.
   */
  async handshake(own: Uint8Array = new Uint8Array(0)): Promise<void> {
    await this.send(PREFACE, frame(FrameType.SETTINGS, 0, 0, own));
    let gotSettings = false, gotAck = false;
    while (!gotSettings || !gotAck) {
      const e = await this.next(5000);
      if (typeof e === "string") {
        throw new Error(`handshake: ${e}; seen ${this.seen.map(describe).join(", ")}`);
      }
      if (e.type !== FrameType.SETTINGS) continue;
      if ((e.flags & Flag.ACK) !== 0) gotAck = true;
      else {
        gotSettings = true;
        for (let p = 0; p + 6 <= e.payload.length; p += 6) {
          this.serverSettings.set((e.payload[p] << 8) | e.payload[p + 1], word(e.payload, p + 2));
        }
        await this.send(frame(FrameType.SETTINGS, Flag.ACK, 0));
      }
    }
  }

  /** A HEADERS frame (END_HEADERS unless `endHeaders` is false) carrying `fields` encoded by this connection. */
  headers(
    sid: number,
    fields: string[],
    o: { end?: boolean; endHeaders?: boolean; pad?: number; priority?: [number, number, boolean] } = {},
  ): Uint8Array {
    return this.headersBlock(sid, this.enc.encode(fields), o);
  }

  /** A HEADERS frame around an already encoded (or deliberately broken) block. */
  headersBlock(
    sid: number,
    block: Uint8Array | number[],
    o: { end?: boolean; endHeaders?: boolean; pad?: number; priority?: [number, number, boolean] } = {},
  ): Uint8Array {
    let flags = o.endHeaders === false ? 0 : Flag.END_HEADERS;
    if (o.end) flags |= Flag.END_STREAM;
    const parts: number[] = [];
    if (o.pad !== undefined) {
      flags |= Flag.PADDED;
      parts.push(o.pad);
    }
    if (o.priority !== undefined) {
      flags |= Flag.PRIORITY;
      const [dep, weight, exclusive] = o.priority;
      parts.push(...u32s((dep | (exclusive ? 0x80000000 : 0)) >>> 0), weight);
    }
    parts.push(...block);
    if (o.pad !== undefined) parts.push(...new Uint8Array(o.pad));
    return frame(FrameType.HEADERS, flags, sid, parts);
  }

  /** A DATA frame (padded with `pad` zero bytes when given). */
  data(sid: number, data: Uint8Array | string, o: { end?: boolean; pad?: number } = {}): Uint8Array {
    const d = typeof data === "string" ? new TextEncoder().encode(data) : data;
    let flags = o.end ? Flag.END_STREAM : 0;
    if (o.pad === undefined) return frame(FrameType.DATA, flags, sid, d);
    flags |= Flag.PADDED;
    const p = new Uint8Array(1 + d.length + o.pad);
    p[0] = o.pad;
    p.set(d, 1);
    return frame(FrameType.DATA, flags, sid, p);
  }

  /** The next frame, or "closed" at EOF / reset, or "timeout" after ms. */
  async next(ms = 3000): Promise<Event> {
    const e = await this.read(ms);
    this.seen.push(e);
    return e;
  }

  private async read(ms: number): Promise<Event> {
    const deadline = Date.now() + ms;
    for (;;) {
      if (this.buf.length >= 9) {
        const len = (this.buf[0] << 16) | (this.buf[1] << 8) | this.buf[2];
        if (this.buf.length >= 9 + len) {
          const f: Frame = {
            type: this.buf[3],
            flags: this.buf[4],
            sid: word(this.buf, 5) & 0x7fffffff,
            payload: this.buf.slice(9, 9 + len),
          };
          this.buf = this.buf.slice(9 + len);
          return f;
        }
      }
      if (this.eof) return "closed";
      // A read outlives a timeout: the next call picks it up, so no bytes are lost.
      this.pending ??= this.conn.read(this.tmp).catch(() => null);
      const left = deadline - Date.now();
      if (left <= 0) return "timeout";
      let timer: ReturnType<typeof setTimeout> | undefined;
      const n = await Promise.race([
        this.pending,
        new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), left)),
      ]);
      clearTimeout(timer);
      if (n === "timeout") return "timeout";
      this.pending = null;
      if (n === null) {
        this.eof = true;
        continue;
      }
      this.buf = concat([this.buf, this.tmp.subarray(0, n)]);
    }
  }

  /** Reads until `want` accepts an event (timeouts and EOF included) and returns it. */
  async until(want: (e: Event) => boolean, ms = 3000): Promise<Event> {
    const deadline = Date.now() + ms;
    for (;;) {
      const e = await this.next(Math.max(1, deadline - Date.now()));
      if (want(e) || typeof e === "string") return e;
    }
  }

  /** The first GOAWAY, RST_STREAM (but RST_STREAM(NO_ERROR), no error), EOF or timeout; other frames are skipped. */
  errorEvent(ms = 3000): Promise<Event> {
    return this.until((e) => typeof e !== "string" && (e.type === FrameType.GOAWAY || isError(e)), ms);
  }

  /** Reads until EOF; true when it came within ms. */
  async closedWithin(ms = 3000): Promise<boolean> {
    return await this.until(() => false, ms) === "closed";
  }

  /**
   * The connection still works: a PING is answered with its payload, and no GOAWAY or RST_STREAM came
   * first (RST_STREAM(NO_ERROR) excepted: it only ends a request early). Throws otherwise.
   */
  async pingOk(ms = 3000): Promise<void> {
    const payload = crypto.getRandomValues(new Uint8Array(8));
    await this.send(frame(FrameType.PING, 0, 0, payload));
    const e = await this.until((e) =>
      typeof e !== "string" &&
      (e.type === FrameType.GOAWAY || isError(e) ||
        (e.type === FrameType.PING && (e.flags & Flag.ACK) !== 0 &&
          e.payload.every((b, i) => b === payload[i]))), ms);
    if (typeof e === "string" || e.type !== FrameType.PING) {
      throw new Error(`PING not answered: ${describe(e)}; seen ${this.seen.map(describe).join(", ")}`);
    }
  }

  /**
   * Reads stream sid's response: its HEADERS (decoded by this connection; 1xx skipped), DATA and
   * trailers up to END_STREAM. Frames of other streams are skipped (their header blocks still decoded,
   * so HPACK stays in step). Throws on a GOAWAY, a RST_STREAM of sid, EOF or timeout first.
   */
  async response(sid: number, ms = 5000): Promise<RawResponse> {
    const deadline = Date.now() + ms;
    const r: RawResponse = {
      status: "",
      fields: [],
      body: new Uint8Array(0),
      trailers: null,
      dataFrames: [],
    };
    const chunks: Uint8Array[] = [];
    let block: Uint8Array | null = null;
    let blockSid = 0, blockEnd = false;
    for (;;) {
      const e = await this.next(Math.max(1, deadline - Date.now()));
      const fail = () =>
        new Error(`stream ${sid}: ${describe(e)}; seen ${this.seen.map(describe).join(", ")}`);
      if (typeof e === "string" || e.type === FrameType.GOAWAY) throw fail();
      if (e.type === FrameType.RST_STREAM && e.sid === sid) throw fail();
      let ended = false;
      if (e.type === FrameType.HEADERS || e.type === FrameType.CONTINUATION) {
        let p = e.payload;
        if (e.type === FrameType.HEADERS) {
          let start = 0, end = p.length;
          if ((e.flags & Flag.PADDED) !== 0) end -= p[start++];
          if ((e.flags & Flag.PRIORITY) !== 0) start += 5;
          p = p.subarray(start, end);
          block = p;
          blockSid = e.sid;
          blockEnd = (e.flags & Flag.END_STREAM) !== 0;
        } else block = concat([block!, p]);
        if ((e.flags & Flag.END_HEADERS) === 0) continue;
        const fields = this.dec.decode(block!);
        block = null;
        if (blockSid !== sid) continue;
        if (r.status === "") {
          const status = field(fields, ":status") ?? "";
          if (status.startsWith("1")) continue;
          r.status = status;
          r.fields = fields;
        } else r.trailers = fields;
        ended = blockEnd;
      } else if (e.type === FrameType.DATA && e.sid === sid) {
        let d = e.payload;
        if ((e.flags & Flag.PADDED) !== 0) d = d.subarray(1, d.length - d[0]);
        chunks.push(d);
        r.dataFrames.push(d.length);
        ended = (e.flags & Flag.END_STREAM) !== 0;
      }
      if (ended) break;
    }
    r.body = concat(chunks);
    return r;
  }

  close(): void {
    try {
      this.conn.close();
    } catch { /* closed */ }
  }
}
