/**
 * The server side of one HTTP/3 connection (RFC 9114) on a Deno QUIC
 * connection: our control stream with SETTINGS, the peer's control and QPACK
 * streams, and each request stream as an H3Stream (request head, body
 * chunks, trailers; response head, body, trailers; resets), shaped like
 * src/http2/connection.ts's H2Stream so the listeners treat both alike.
 *
 * QUIC does flow control and stream limits (MAX_STREAMS) itself; what is
 * left here is framing, header checks and the connection's lifecycle.
 */
import { concat } from "../net/bytes.ts";
import {
  decodeSettings,
  decodeSingleVarint,
  encodeFrame,
  encodeGoaway,
  encodeSettings,
  frameHeader,
  FrameType,
  H3Error,
  H3ProtocolError,
  RESERVED_H2_FRAME_TYPES,
  Setting,
  StreamReader,
  StreamType,
} from "./frame.ts";
import { decodeFieldSection, encodeFieldSection } from "./qpack.ts";
import { encodeVarint } from "./varint.ts";

/** Options for a server connection. */
export interface H3ConnectionOptions {
  /** Largest request field section (RFC 9114 §4.2.2 size); beyond it the stream is `oversized`. */
  maxFieldSectionSize: number;
  /** Time a new request stream has to deliver its HEADERS; then it is reset (H3_REQUEST_INCOMPLETE). */
  readHeaderTimeout: number;
  /** Called with each request stream once its HEADERS arrived (check `oversized` and `malformed`). */
  onStream(s: H3Stream): void;
}

/** Control frames larger than this are H3_EXCESSIVE_LOAD: they are all a few varints. */
const MAX_CONTROL_FRAME = 16 * 1024;

/** Stream-level errors; all other H3ProtocolErrors on a request stream close the connection. */
function streamLevel(code: number): boolean {
  return code === H3Error.MESSAGE_ERROR || code === H3Error.REQUEST_INCOMPLETE;
}

/** Frames that must not appear on a request stream (they belong to the control stream or to HTTP/2). */
function forbiddenOnRequest(type: number): boolean {
  return type === FrameType.SETTINGS || type === FrameType.GOAWAY || type === FrameType.MAX_PUSH_ID ||
    type === FrameType.CANCEL_PUSH || type === FrameType.PUSH_PROMISE || RESERVED_H2_FRAME_TYPES.has(type);
}

const REQUEST_PSEUDO = new Set([":method", ":scheme", ":authority", ":path"]);
const CONNECTION_SPECIFIC = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
]);

/** RFC 9110 token characters, lower-case only (RFC 9114 §4.2: upper-case names are malformed). */
const NAME_CHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz") NAME_CHAR[c.charCodeAt(0)] = 1;

function malformed(message: string): never {
  throw new H3ProtocolError(H3Error.MESSAGE_ERROR, message);
}

/** Checks regular field lines (names, values, connection-specific fields). */
function checkFields(f: string[], from: number): void {
  for (let i = from; i < f.length; i += 2) {
    const k = f[i], v = f[i + 1];
    if (k.length === 0) malformed("empty field name");
    for (let j = 0; j < k.length; j++) {
      const c = k.charCodeAt(j);
      if (c >= 128 || NAME_CHAR[c] === 0) malformed(`invalid field name ${JSON.stringify(k)}`);
    }
    for (let j = 0; j < v.length; j++) {
      const c = v.charCodeAt(j);
      if (c === 0 || c === 0x0a || c === 0x0d) malformed(`invalid value in ${k}`);
    }
    if (CONNECTION_SPECIFIC.has(k)) malformed(`connection-specific field ${k}`);
    if (k === "te" && v.toLowerCase() !== "trailers") malformed("te other than trailers");
  }
}

/**
 * RFC 9114 §4.3.1 request checks: pseudo-headers first, each once, only
 * request ones; :method, :scheme and a non-empty :path (CONNECT: :authority
 * only); an authority (:authority or host, equal when both).
 */
export function validateRequest(f: string[]): void {
  const seen = new Map<string, string>();
  let i = 0;
  for (; i < f.length && f[i][0] === ":"; i += 2) {
    if (!REQUEST_PSEUDO.has(f[i])) malformed(`pseudo-header ${f[i]} not allowed in a request`);
    if (seen.has(f[i])) malformed(`duplicate ${f[i]}`);
    seen.set(f[i], f[i + 1]);
  }
  for (let j = i; j < f.length; j += 2) if (f[j][0] === ":") malformed("pseudo-header after a regular field");
  checkFields(f, i);
  const method = seen.get(":method");
  if (method === undefined || method === "") malformed("missing :method");
  if (method === "CONNECT") {
    if (seen.has(":scheme") || seen.has(":path") || !seen.get(":authority")) malformed("malformed CONNECT");
    return;
  }
  const scheme = seen.get(":scheme"), path = seen.get(":path");
  if (scheme === undefined || scheme === "") malformed("missing :scheme");
  if (path === undefined || path === "") malformed("missing :path");
  let host: string | undefined;
  for (let j = i; j < f.length; j += 2) if (f[j] === "host") host = f[j + 1];
  const authority = seen.get(":authority");
  if ((scheme === "https" || scheme === "http") && !authority && !host) malformed("no :authority or host");
  if (authority !== undefined && host !== undefined && authority !== host) {
    malformed(":authority and host differ");
  }
}

/** One request stream (server side). */
export class H3Stream {
  /** The QUIC stream id. */
  readonly id: number;
  /** The request fields (pseudo-headers included), in wire order. */
  headers: string[] = [];
  /** The request field section exceeded maxFieldSectionSize: answer 431 (fields are incomplete). */
  oversized = false;
  /** The request ended right after its HEADERS (no body, no trailers), as far as already received. */
  headersEnded = false;
  /** Why the request head is malformed (RFC 9114 §4.1.2): answer 400 without serving it. Else null. */
  malformed: string | null = null;
  /** Request trailers (a HEADERS frame after the body), else null. */
  trailers: string[] | null = null;
  /** The error code the stream was reset or aborted with (either side), else null. */
  rstCode: number | null = null;

  private reader: StreamReader;
  private rs: ReadableStreamDefaultReader<Uint8Array>;
  private ws: WritableStreamDefaultWriter<Uint8Array>;
  /** Bytes left in the DATA frame being read. */
  private dataLeft = 0;
  private remoteEnded = false;
  private localEnded = false;
  private responseStarted = false;
  private contentLength = -1;
  private received = 0;
  private finished = Promise.withResolvers<void>();
  private isDone = false;

  /** @internal Built by H3Connection. */
  constructor(private conn: H3Connection, bidi: Deno.QuicBidirectionalStream, id: number) {
    this.id = id;
    this.rs = bidi.readable.getReader();
    this.ws = bidi.writable.getWriter();
    this.reader = new StreamReader(async () => {
      const r = await this.rs.read();
      return r.done ? null : r.value;
    });
    // STOP_SENDING from the client (it gave up on the response) errors our side: a reset.
    this.ws.closed.catch(() => this.markReset(H3Error.REQUEST_CANCELLED));
  }

  /** Resolves once the stream is finished: both sides ended, or reset. */
  get done(): Promise<void> {
    return this.finished.promise;
  }

  /** Reads the request head; false when the stream was reset instead (timeout, cancelled, connection error). */
  async readHead(opts: H3ConnectionOptions): Promise<boolean> {
    const timer = setTimeout(() => this.reset(H3Error.REQUEST_INCOMPLETE), opts.readHeaderTimeout);
    try {
      for (;;) {
        const h = await this.reader.frameHeader();
        if (h === null) throw new H3ProtocolError(H3Error.REQUEST_INCOMPLETE, "stream ended before HEADERS");
        if (h.type === FrameType.HEADERS) {
          if (h.length > opts.maxFieldSectionSize) {
            // Encoded bytes never exceed the decoded size (name + value + 32 per line), so this is
            // over the limit without decoding; the payload is skipped rather than buffered.
            this.oversized = true;
            await this.reader.skip(h.length);
          } else {
            const d = decodeFieldSection(await this.reader.exact(h.length), {
              maxSize: opts.maxFieldSectionSize,
            });
            this.headers = d.fields;
            this.oversized = d.oversized;
          }
          break;
        }
        if (h.type === FrameType.DATA || forbiddenOnRequest(h.type)) {
          throw new H3ProtocolError(H3Error.FRAME_UNEXPECTED, `frame type ${h.type} before HEADERS`);
        }
        await this.reader.skip(h.length); // unknown and reserved (grease) types
      }
      if (!this.oversized) {
        validateRequest(this.headers);
        for (let i = 0; i < this.headers.length; i += 2) {
          if (this.headers[i] === "content-length") {
            const v = this.headers[i + 1];
            if (!/^[0-9]{1,15}$/.test(v) || (this.contentLength !== -1 && Number(v) !== this.contentLength)) {
              malformed("invalid content-length");
            }
            this.contentLength = Number(v);
          }
        }
      }
      // Peek without waiting: a GET's FIN usually came with its HEADERS. If not known yet, the
      // request gets a streamed body that may turn out empty.
      this.headersEnded = await Promise.race([
        this.reader.atEnd(),
        new Promise<boolean>((r) => setTimeout(() => r(false), 0)),
      ]);
      if (this.headersEnded) {
        this.remoteEnded = true;
        if (this.contentLength > 0) malformed("body shorter than content-length");
      }
      return true;
    } catch (e) {
      if (e instanceof H3ProtocolError && e.code === H3Error.MESSAGE_ERROR) {
        // RFC 9114 §4.1.2 allows a 4xx answer to a malformed request, and it is the only signal Deno
        // lets us give (see reset()): the listener answers 400 and stops reading.
        this.malformed = e.message;
        return true;
      }
      this.fail(e);
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The next request body chunk, or null at its end (trailers, if any, are then in `trailers`). */
  async read(): Promise<Uint8Array | null> {
    try {
      for (;;) {
        if (this.dataLeft > 0) {
          const c = await this.reader.upTo(this.dataLeft);
          this.dataLeft -= c.length;
          this.received += c.length;
          if (this.contentLength >= 0 && this.received > this.contentLength) {
            malformed("body exceeds content-length");
          }
          return c;
        }
        if (this.remoteEnded) return null;
        const h = await this.reader.frameHeader();
        if (h === null) {
          this.remoteEnded = true;
          if (this.contentLength >= 0 && this.received !== this.contentLength) {
            malformed("body shorter than content-length");
          }
          this.checkDone();
          return null;
        }
        if (h.type === FrameType.DATA) {
          this.dataLeft = h.length;
        } else if (h.type === FrameType.HEADERS) {
          // Trailers: the last frame on the stream, no pseudo-headers.
          const d = decodeFieldSection(await this.reader.exact(h.length), {
            maxSize: this.conn.maxFieldSectionSize,
          });
          if (d.oversized) malformed("trailer section too large");
          for (let i = 0; i < d.fields.length; i += 2) {
            if (d.fields[i][0] === ":") malformed("pseudo-header in trailers");
          }
          checkFields(d.fields, 0);
          if (!(await this.reader.atEnd())) {
            throw new H3ProtocolError(H3Error.FRAME_UNEXPECTED, "frame after trailers");
          }
          this.trailers = d.fields;
          this.remoteEnded = true;
          if (this.contentLength >= 0 && this.received !== this.contentLength) {
            malformed("body shorter than content-length");
          }
          this.checkDone();
          return null;
        } else if (forbiddenOnRequest(h.type)) {
          throw new H3ProtocolError(H3Error.FRAME_UNEXPECTED, `frame type ${h.type} on a request stream`);
        } else await this.reader.skip(h.length);
      }
    } catch (e) {
      this.fail(e);
      throw e;
    }
  }

  /** Sends the response HEADERS (`fields` starts with :status); `endStream` ends the response with them. */
  respond(fields: string[], endStream: boolean): void {
    this.responseStarted = true;
    const frame = encodeFrame(FrameType.HEADERS, encodeFieldSection(fields));
    this.ws.write(frame).catch(() => {});
    if (endStream) this.finish();
  }

  /** Sends body bytes as one DATA frame; resolves when the QUIC stream took them (back-pressure). */
  async write(data: Uint8Array): Promise<void> {
    if (this.localEnded) throw new Error("stream already ended");
    if (data.length === 0) return;
    // The caller may reuse `data` after the promise settles; until then the stream holds the view.
    await Promise.all([this.ws.write(frameHeader(FrameType.DATA, data.length)), this.ws.write(data)]);
  }

  /** Ends the response, with trailers when given. */
  async end(trailers?: string[] | null): Promise<void> {
    if (this.localEnded) return;
    if (trailers && trailers.length > 0) {
      this.ws.write(encodeFrame(FrameType.HEADERS, encodeFieldSection(trailers))).catch(() => {});
    }
    await this.finish();
  }

  /**
   * Aborts the stream. Deno 2.9.6 cannot send RESET_STREAM with a code: its
   * WritableStream.abort() ends the stream with a FIN (and STOP_SENDING carries
   * code 0). Before the response started, that FIN still tells the client the
   * request failed; a response in progress would pass as complete though, so
   * then the connection is closed with `code` instead, as HTTP/1.1 would.
   */
  reset(code: number): void {
    if (this.isDone) return;
    this.markReset(code);
    if (this.responseStarted && !this.localEnded) {
      this.conn.fail(code, "response aborted");
      return;
    }
    this.ws.abort(code).catch(() => {});
    this.rs.cancel(code).catch(() => {});
  }

  private async finish(): Promise<void> {
    if (this.localEnded) return;
    this.localEnded = true;
    try {
      await this.ws.close();
    } catch {
      this.markReset(H3Error.REQUEST_CANCELLED);
      return;
    }
    // RFC 9114 §4.1: a complete response may stop the request's upload with H3_NO_ERROR.
    if (!this.remoteEnded) this.rs.cancel(H3Error.NO_ERROR).catch(() => {});
    this.remoteEnded = true;
    this.checkDone();
  }

  private checkDone(): void {
    if (this.localEnded && this.remoteEnded) this.setDone();
  }

  private markReset(code: number): void {
    if (this.isDone) return;
    this.rstCode = code;
    this.setDone();
  }

  private setDone(): void {
    if (this.isDone) return;
    this.isDone = true;
    this.finished.resolve();
  }

  /** Maps an error while reading to a stream reset or a connection close. */
  private fail(e: unknown): void {
    if (e instanceof H3ProtocolError) {
      if (streamLevel(e.code)) this.reset(e.code);
      else this.conn.fail(e.code, e.message);
    } else this.markReset(H3Error.REQUEST_CANCELLED); // reset by the peer, or the connection is gone
  }
}

/** One HTTP/3 server connection. */
export class H3Connection {
  /** Resolves when the QUIC connection closed (either side). */
  readonly closed: Promise<void>;
  /** @internal */ readonly maxFieldSectionSize: number;
  private streams = new Set<H3Stream>();
  private control: WritableStreamDefaultWriter<Uint8Array> | null = null;
  private peerStreams = new Set<number>();
  /** Highest client bidirectional stream id seen; -1 before the first. */
  private lastStreamId = -1;
  /** The id our GOAWAY carried (streams from it on are rejected); -1 while not going away. */
  private goawayId = -1;
  private isClosed = false;

  constructor(readonly quic: Deno.QuicConn, private opts: H3ConnectionOptions) {
    this.maxFieldSectionSize = opts.maxFieldSectionSize;
    this.closed = quic.closed.then(() => {}, () => {}).finally(() => this.isClosed = true);
  }

  /** Request streams in progress. */
  get activeStreams(): number {
    return this.streams.size;
  }

  /** Whether GOAWAY was sent. */
  get goingAway(): boolean {
    return this.goawayId !== -1;
  }

  /** Opens our control stream and serves the peer's streams until the connection closes. */
  async serve(): Promise<void> {
    try {
      const s = await this.quic.createUnidirectionalStream();
      this.control = s.getWriter();
      // Table capacity 0 and no blocked streams: peers never use a dynamic table (see qpack.ts).
      const settings = encodeSettings(
        new Map([[Setting.QPACK_MAX_TABLE_CAPACITY, 0], [Setting.QPACK_BLOCKED_STREAMS, 0]]),
      );
      await this.control.write(concat([encodeVarint(StreamType.CONTROL), settings]));
    } catch {
      this.destroy();
      return;
    }
    this.acceptUni();
    await this.acceptBidi();
  }

  /**
   * Graceful close: GOAWAY with the first stream id we will not serve; the
   * connection closes once the streams in progress are done.
   */
  goaway(): void {
    if (this.goingAway || this.isClosed) return;
    // Client bidirectional stream ids are 0, 4, 8, ...: the one after the last seen is the first refused.
    this.goawayId = this.lastStreamId < 0 ? 0 : this.lastStreamId + 4;
    this.control?.write(encodeGoaway(this.goawayId)).catch(() => {});
    this.closeWhenIdle();
  }

  /** Closes the connection with an error code (connection error) or H3_NO_ERROR. */
  fail(code: number, reason = ""): void {
    if (this.isClosed) return;
    this.isClosed = true;
    try {
      this.quic.close({ closeCode: code, reason: reason.slice(0, 100) });
    } catch { /* already closed */ }
  }

  /** Closes at once (H3_NO_ERROR); streams in progress are cut. */
  destroy(): void {
    this.fail(H3Error.NO_ERROR, "shutdown");
  }

  private closeWhenIdle(): void {
    if (!this.goingAway || this.streams.size > 0 || this.isClosed) return;
    // The peer usually closes after GOAWAY once idle; give it a moment so our last response bytes are
    // delivered (a local close drops unsent stream data), then close ourselves.
    const t = setTimeout(() => this.fail(H3Error.NO_ERROR), 500);
    this.closed.then(() => clearTimeout(t));
  }

  private async acceptBidi(): Promise<void> {
    const r = this.quic.incomingBidirectionalStreams.getReader();
    for (;;) {
      let bidi: Deno.QuicBidirectionalStream;
      try {
        const next = await r.read();
        if (next.done) return;
        bidi = next.value;
      } catch {
        return;
      }
      // Read the id first: it throws once the stream is closed.
      let id: number;
      try {
        id = Number(bidi.readable.id);
      } catch {
        continue;
      }
      if (this.goingAway && id >= this.goawayId) {
        // RFC 9114 §5.2: not processed at all, so the client may retry it elsewhere.
        bidi.writable.abort(H3Error.REQUEST_REJECTED).catch(() => {});
        bidi.readable.cancel(H3Error.REQUEST_REJECTED).catch(() => {});
        continue;
      }
      if (id > this.lastStreamId) this.lastStreamId = id;
      const s = new H3Stream(this, bidi, id);
      this.streams.add(s);
      s.done.then(() => {
        this.streams.delete(s);
        this.closeWhenIdle();
      });
      s.readHead(this.opts).then((ok) => {
        if (ok) this.opts.onStream(s);
      });
    }
  }

  private async acceptUni(): Promise<void> {
    const r = this.quic.incomingUnidirectionalStreams.getReader();
    for (;;) {
      try {
        const next = await r.read();
        if (next.done) return;
        this.onUni(next.value);
      } catch {
        return;
      }
    }
  }

  private async onUni(rs: Deno.QuicReceiveStream): Promise<void> {
    const reader = rs.getReader();
    const sr = new StreamReader(async () => {
      const r = await reader.read();
      return r.done ? null : r.value;
    });
    try {
      const type = await sr.varint();
      if (type === null) return;
      if (type === StreamType.PUSH) {
        throw new H3ProtocolError(H3Error.STREAM_CREATION_ERROR, "client-initiated push stream");
      }
      if (
        type !== StreamType.CONTROL && type !== StreamType.QPACK_ENCODER && type !== StreamType.QPACK_DECODER
      ) {
        // Unknown types (extensions, grease) are ignored: stop the sender (RFC 9114 §6.2).
        reader.cancel(H3Error.STREAM_CREATION_ERROR).catch(() => {});
        return;
      }
      if (this.peerStreams.has(type)) {
        throw new H3ProtocolError(H3Error.STREAM_CREATION_ERROR, `second stream of type ${type}`);
      }
      this.peerStreams.add(type);
      if (type === StreamType.CONTROL) await this.readControl(sr);
      else {
        // QPACK encoder/decoder streams: with a table capacity of 0 there is nothing to act on
        // (at most a Set Dynamic Table Capacity 0), and we never send field sections that need
        // acknowledging. Drain them; they must stay open.
        while (!(await sr.atEnd())) await sr.upTo(65536);
      }
      throw new H3ProtocolError(H3Error.CLOSED_CRITICAL_STREAM, "critical stream closed");
    } catch (e) {
      if (e instanceof H3ProtocolError && !this.isClosed) this.fail(e.code, e.message);
    }
  }

  private async readControl(sr: StreamReader): Promise<void> {
    let first = true;
    for (;;) {
      const h = await sr.frameHeader();
      if (h === null) return;
      if (first && h.type !== FrameType.SETTINGS) {
        throw new H3ProtocolError(H3Error.MISSING_SETTINGS, "control stream must start with SETTINGS");
      }
      if (h.length > MAX_CONTROL_FRAME) {
        throw new H3ProtocolError(H3Error.EXCESSIVE_LOAD, "control frame too large");
      }
      switch (h.type) {
        case FrameType.SETTINGS:
          if (!first) throw new H3ProtocolError(H3Error.FRAME_UNEXPECTED, "second SETTINGS");
          // Nothing in the peer's settings changes what we send: our encoder never uses the dynamic
          // table, and responses are not bounded by a client's MAX_FIELD_SECTION_SIZE in practice.
          decodeSettings(await sr.exact(h.length));
          break;
        case FrameType.GOAWAY:
        case FrameType.CANCEL_PUSH:
        case FrameType.MAX_PUSH_ID:
          // A client GOAWAY names push ids; we never push, so these carry no action.
          decodeSingleVarint(await sr.exact(h.length));
          break;
        case FrameType.DATA:
        case FrameType.HEADERS:
        case FrameType.PUSH_PROMISE:
          throw new H3ProtocolError(H3Error.FRAME_UNEXPECTED, `frame type ${h.type} on the control stream`);
        default:
          if (RESERVED_H2_FRAME_TYPES.has(h.type)) {
            throw new H3ProtocolError(H3Error.FRAME_UNEXPECTED, `HTTP/2 frame type ${h.type}`);
          }
          await sr.skip(h.length);
      }
      first = false;
    }
  }
}
