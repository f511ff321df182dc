/**
 * Loom's HTTP/2 (RFC 9113) connection layer, for both roles: listeners (h2c, h2
 * over TLS, gRPC) and pooled upstream connections.
 *
 * Design, for the proxy hot path:
 * - one read loop per connection reads into a reused buffer and parses frames in
 *   place; only DATA payloads (handed to the caller) and split header blocks are copied;
 * - every frame produced in a turn is appended to one output buffer that is
 *   flushed by a single transport write (two buffers swap so the next batch can
 *   build while one is being written; never two writes in flight);
 * - receive credit is returned when the caller consumes data, so a slow reader
 *   back-pressures the peer; blocked writers wait in a round-robin queue.
 */
import { HpackDecoder, HpackEncoder } from "./hpack.ts";
import { fieldSectionSize } from "./fields.ts";
import {
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_WINDOW,
  ErrorCode,
  Flag,
  FrameType,
  FrameWriter,
  MAX_MAX_FRAME_SIZE,
  MAX_WINDOW,
  PREFACE,
  SettingId,
} from "./frame.ts";
import { pool16k, pool64k } from "../net/buffer_pool.ts";
import { type ReadOp, readOpOf } from "../net/read_op.ts";
import { arm, disarm, type Expirable } from "../core/deadline.ts";

/** The byte stream under a connection: Deno.Conn / Deno.TlsConn satisfy it; node TLS sockets are adapted to it by the caller. */
export interface H2Transport {
  /** Reads into p; null at EOF. */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes (part of) p; resolves with the number of bytes written. */
  write(p: Uint8Array): Promise<number>;
  /** Closes the byte stream. */
  close(): void;
}

/** Connection options. */
export interface H2Options {
  /** SETTINGS_MAX_CONCURRENT_STREAMS we advertise (server: streams beyond it are refused with RST_STREAM REFUSED_STREAM). Default 100. */
  maxConcurrentStreams?: number;
  /** Initial stream receive window we advertise. Default 1 MiB. */
  initialWindowSize?: number;
  /** Connection receive window (raised with a WINDOW_UPDATE on stream 0 right after the preface). Default 4 MiB. */
  connectionWindowSize?: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE we advertise. Default 64 KiB. A request above it is still delivered, with stream.oversized = true (the listener answers 431). */
  maxHeaderListSize?: number;
  /** SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441), server only. */
  enableConnectProtocol?: boolean;
  /** Server: called for each new request stream, after its complete HEADERS block (stream.headers set). */
  onStream?: (s: H2Stream) => void;
  /** Bytes already read from the transport before the connection took over (e.g. a sniffed preface). */
  leftover?: Uint8Array;
  /** Our SETTINGS not acknowledged within this many ms: GOAWAY(SETTINGS_TIMEOUT) (RFC 9113 §6.5.3); 0 = wait forever. Default 10 s. */
  settingsTimeout?: number;
  /** Keepalive: a PING when nothing arrived for this many ms (0 = off, the default)... */
  keepaliveInterval?: number;
  /** ...and the connection closed when nothing (its ACK included) arrived this many ms after that PING. Default 20 s. */
  keepaliveTimeout?: number;
  /**
   * Unsent output (bytes) beyond which no more DATA is queued: stream writes wait until the transport
   * took it, whatever windows the peer granted, so a peer that stops reading holds about twice this
   * (the buffer in flight and the one filling). At least 16 KiB. Default: unbounded (the windows only).
   */
  maxBufferedOutput?: number;
  /**
   * Called for each error of the peer's making that we answer with GOAWAY or RST_STREAM (refused
   * streams are no error): the RFC 9113 code, what was wrong, and the stream (0: a connection error).
   */
  onProtocolError?: (code: number, message: string, streamId: number) => void;
}

/** A connection or stream error; `code` is the RFC 9113 error code. */
export class H2Error extends Error {
  /** RFC 9113 error code. */
  readonly code: number;
  /** Creates an error with an RFC 9113 code. */
  constructor(code: number, message?: string) {
    super(message ?? `HTTP/2 error 0x${code.toString(16)}`);
    this.name = "H2Error";
    this.code = code;
  }
}

const EMPTY = new Uint8Array(0);
const EMPTY_FIELDS: string[] = [];
const RESOLVED: Promise<void> = Promise.resolve();
const noop = () => {};
/**
 * What an idle connection reads into (the client's next HEADERS, a PING, SETTINGS): frames
 * that need more room, and streams that are sending bodies, get a pooled 64 KiB buffer (which
 * exceeds FRAME_HEADER_SIZE + our max frame size by a wide margin).
 */
const IDLE_READ_BUFFER = 1024;
/** Our SETTINGS_MAX_FRAME_SIZE (we never advertise more than the default). */
const LOCAL_MAX_FRAME = DEFAULT_MAX_FRAME_SIZE;
/** peerMaxConcurrentStreams when the peer's SETTINGS leave it unlimited. */
const UNLIMITED_STREAMS = 0x7fffffff;
/** How long a closing connection waits for its last bytes to drain before the transport is closed anyway. */
const CLOSE_DRAIN_MS = 5000;
/** After our GOAWAY, how long to wait for the PING that follows it to come back before closing anyway. */
const GOAWAY_ACK_MS = 1000;
/** After a failed write, how long the read loop may take in what already arrived before the teardown. */
const WRITE_FAIL_GRACE_MS = 1000;
/** Payload of the PING sent right after our GOAWAY (its ACK proves the peer saw the GOAWAY). */
const GOAWAY_PING = new TextEncoder().encode("loom-bye");
/** How many stream ids we reset are remembered, so frames already in flight for them are ignored. */
const RESET_MEMORY = 1024;
/** How many ranges of stream ids the peer skipped (closed without ever opening them) are remembered. */
const SKIPPED_MEMORY = 16;
/** Payload of keepalive PINGs. */
const KEEPALIVE_PING = new TextEncoder().encode("loom-ka!");
/** Internal header-block flag (beyond the frame's own bits): its priority fields name its own stream. */
const SELF_DEPENDENT = 0x100;

interface PendingWrite {
  data: Uint8Array;
  off: number;
  /** End of stream after this entry (then `data` is empty). */
  end: boolean;
  trailers: string[] | null;
  resolve: () => void;
  reject: (e: Error) => void;
}

/** One HTTP/2 stream. */
export class H2Stream {
  /** The stream id. */
  readonly id: number;
  /** Server: the request fields (pseudo-headers included). Client: the final response fields once `response` resolved. */
  headers: string[] = EMPTY_FIELDS;
  /** Server: the request's header list exceeded maxHeaderListSize. */
  oversized = false;
  /** The peer ended its side (END_STREAM seen). Set before the last read() returns null. */
  remoteEnded = false;
  /**
   * END_STREAM was on the request (server) or final response (client) HEADERS itself: no body, no
   * trailers (a gRPC trailers-only answer). Unlike remoteEnded, later frames cannot set it.
   */
  headersEnded = false;
  /** Trailers received (a HEADERS block with END_STREAM after data or after response headers), else null. */
  trailers: string[] | null = null;
  /** The RST_STREAM code received or sent, else null. */
  rstCode: number | null = null;

  // Internal state, driven by H2Connection (kept as plain fields: one object shape).
  /** @internal */ _conn: H2Connection;
  /** @internal */ _sendWindow: number;
  /** @internal */ _recvWindow: number;
  /** @internal Consumed bytes not yet returned with a stream WINDOW_UPDATE. */
  _unacked = 0;
  /** @internal */ _localEnded = false;
  /** @internal Removed from the connection (closed both ways or reset). */
  _closed = false;
  /** @internal */ _contentLength = -1;
  /** @internal */ _received = 0;
  /** @internal */ _chunks: Uint8Array[] = [];
  /** @internal */ _reader: PromiseWithResolvers<Uint8Array | null> | null = null;
  /** @internal */ _readErr: H2Error | null = null;
  /** @internal */ _writeErr: H2Error | null = null;
  /** @internal */ _pending: PendingWrite[] = [];
  /** @internal In the connection's send queue. */
  _queued = false;
  /** @internal Client: final response headers seen. */
  _gotResponse = false;
  /** @internal */ _resp: PromiseWithResolvers<string[]> | null = null;
  /** @internal */ _done: PromiseWithResolvers<void> | null = null;
  /** @internal Server: an extended CONNECT tunnel (ending our side does not end the exchange). */
  _tunnel = false;
  /** @internal Counted in the connection's `receiving` (the peer may still send DATA on it). */
  _rx = false;

  /** @internal */
  constructor(conn: H2Connection, id: number, sendWindow: number, recvWindow: number, client: boolean) {
    this._conn = conn;
    this.id = id;
    this._sendWindow = sendWindow;
    this._recvWindow = recvWindow;
    if (client) {
      this._resp = Promise.withResolvers<string[]>();
      // The caller may never look at `response` (e.g. after resetting): no unhandled rejection.
      this._resp.promise.catch(noop);
    }
  }

  /** Client: resolves with the final (non-1xx) response fields; rejects with H2Error on reset/connection loss (code REFUSED_STREAM when the peer refused it or it was above a received GOAWAY's last stream id, so the caller knows it is safe to retry). */
  get response(): Promise<string[]> {
    return this._resp ? this._resp.promise : Promise.resolve(this.headers);
  }

  /** Reset (either side) or its connection lost: nothing more can be sent on it. */
  get failed(): boolean {
    return this._writeErr !== null;
  }

  /** The largest header list the peer accepts (its SETTINGS_MAX_HEADER_LIST_SIZE); Infinity when it set none. */
  get peerMaxFieldSection(): number {
    return this._conn.peerMaxHeaderListSize;
  }

  /** Resolves when the stream is closed both ways or reset (never rejects). */
  get done(): Promise<void> {
    if (this._closed) return RESOLVED;
    if (!this._done) this._done = Promise.withResolvers<void>();
    return this._done.promise;
  }

  /** Next DATA payload (a copy the caller owns), or null after END_STREAM. Throws H2Error when reset or the connection is lost. Consuming data returns flow-control credit (WINDOW_UPDATE for stream and connection once at least half a window is consumed), so a slow reader back-pressures the peer. */
  read(): Promise<Uint8Array | null> {
    if (this._chunks.length > 0) {
      const c = this._chunks.shift()!;
      this._conn._consumed(this, c.length);
      return Promise.resolve(c);
    }
    if (this._readErr) return Promise.reject(this._readErr);
    if (this.remoteEnded) return Promise.resolve(null);
    if (this._reader) {
      return Promise.reject(new H2Error(ErrorCode.INTERNAL_ERROR, "concurrent read() on a stream"));
    }
    this._reader = Promise.withResolvers<Uint8Array | null>();
    return this._reader.promise;
  }

  /** Server: sends the response HEADERS (":status" first). endStream = one HEADERS frame with END_STREAM (a gRPC trailers-only response). */
  respond(fields: string[], endStream: boolean): void {
    this._conn._sendHeaders(this, fields, endStream);
  }

  /** Sends DATA (split at the peer's SETTINGS_MAX_FRAME_SIZE); resolves once all of it fit in the send windows and was queued; the caller may reuse `data` after that. Rejects with H2Error when the stream is reset/closed. */
  write(data: Uint8Array): Promise<void> {
    return this._conn._write(this, data);
  }

  /** Ends our side: trailers as a HEADERS block with END_STREAM, or an empty DATA frame with END_STREAM. */
  end(trailers?: string[] | null): Promise<void> {
    return this._conn._end(this, trailers ?? null);
  }

  /** RST_STREAM(code); pending read/write reject. */
  reset(code: number): void {
    this._conn._reset(this, code, true);
  }
}

// RFC 9110 tchar, lowercase only (HTTP/2 field names must be lowercase).
const NAME_OK = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz") NAME_OK[c.charCodeAt(0)] = 1;
// RFC 9113 §8.2.1: no NUL/CR/LF anywhere, no leading/trailing whitespace.
const BAD_VALUE = /[\0\r\n]|^[ \t]|[ \t]$/;
const DIGITS = /^[0-9]{1,15}$/;

function validName(n: string): boolean {
  if (n.length === 0) return false;
  for (let i = 0; i < n.length; i++) {
    const c = n.charCodeAt(i);
    if (c >= 128 || NAME_OK[c] === 0) return false;
  }
  return true;
}

/** Set by checkRequest: the list it last accepted was a CONNECT (a tunnel). */
let checkedConnect = false;

/** Validates a request header list (RFC 9113 §8.2, §8.3.1). Returns -2 when malformed, else the content-length (-1 when absent). */
function checkRequest(f: string[], enableConnect: boolean): number {
  let method: string | undefined, scheme: string | undefined, path: string | undefined;
  let authority: string | undefined, protocol: string | undefined;
  let regular = false;
  let cl = -1;
  for (let i = 0; i < f.length; i += 2) {
    const name = f[i], value = f[i + 1];
    if (value.length > 0 && BAD_VALUE.test(value)) return -2;
    if (name.charCodeAt(0) === 58 /* : */) {
      if (regular) return -2;
      switch (name) {
        case ":method":
          if (method !== undefined) return -2;
          method = value;
          break;
        case ":scheme":
          if (scheme !== undefined) return -2;
          scheme = value;
          break;
        case ":path":
          if (path !== undefined) return -2;
          path = value;
          break;
        case ":authority":
          if (authority !== undefined) return -2;
          authority = value;
          break;
        case ":protocol":
          if (protocol !== undefined) return -2;
          protocol = value;
          break;
        default:
          return -2; // unknown, or a response pseudo-header (:status)
      }
      continue;
    }
    regular = true;
    if (!validName(name)) return -2;
    switch (name) {
      case "connection":
      case "keep-alive":
      case "proxy-connection":
      case "transfer-encoding":
      case "upgrade":
        return -2;
      case "te":
        if (value !== "trailers") return -2;
        break;
      case "content-length": {
        if (!DIGITS.test(value)) return -2;
        const n = Number(value);
        if (cl >= 0 && cl !== n) return -2;
        cl = n;
        break;
      }
    }
  }
  if (method === undefined || method.length === 0) return -2;
  checkedConnect = method === "CONNECT";
  if (checkedConnect) {
    if (protocol === undefined) {
      // Plain CONNECT: only :method and :authority (RFC 9113 §8.5).
      if (scheme !== undefined || path !== undefined || !authority) return -2;
    } else if (!enableConnect || !scheme || !path || !authority) return -2; // RFC 8441 §4
  } else {
    if (protocol !== undefined || !scheme || !path) return -2;
  }
  return cl;
}

/** Validates a response header list; returns the status or -1. */
function checkResponse(f: string[]): number {
  let status = -1;
  let regular = false;
  for (let i = 0; i < f.length; i += 2) {
    const name = f[i];
    if (name.charCodeAt(0) === 58) {
      if (regular || name !== ":status" || status !== -1) return -1;
      const v = f[i + 1];
      if (v.length !== 3 || !DIGITS.test(v)) return -1;
      status = Number(v);
    } else regular = true;
  }
  return status;
}

function checkTrailers(f: string[]): boolean {
  for (let i = 0; i < f.length; i += 2) if (f[i].charCodeAt(0) === 58) return false;
  return true;
}

/** One HTTP/2 connection over a byte stream, in the server or the client role. */
export class H2Connection implements Expirable {
  /** Peer SETTINGS received; rejects (H2Error) if the connection dies first. */
  readonly ready: Promise<void>;
  /** Transport closed (never rejects). */
  readonly closed: Promise<void>;
  /** Called when the peer sends GOAWAY. */
  onGoaway?: (lastStreamId: number, code: number) => void;

  private readonly t: H2Transport;
  /** The transport's read op (src/net/read_op.ts: Deno's Conn.read wrapper churns old space). */
  private readonly readOp: ReadOp;
  private readonly isServer: boolean;
  private readonly enc = new HpackEncoder();
  private readonly dec = new HpackDecoder();
  private readonly streams = new Map<number, H2Stream>();
  private readonly onStream: ((s: H2Stream) => void) | undefined;
  private readonly onProtocolError: ((code: number, message: string, streamId: number) => void) | undefined;

  // Our settings.
  private readonly maxConcurrent: number;
  private readonly iws: number;
  private readonly connWindowSize: number;
  private readonly maxHeaderListSize: number;
  private readonly enableConnect: boolean;
  /** The stream window the peer believes we granted (the default until it ACKs our SETTINGS). */
  private peerViewIws = DEFAULT_WINDOW;
  private settingsAcked = false;

  // Peer settings.
  private peerMaxConcurrent = 100;
  private peerIws = DEFAULT_WINDOW;
  private peerMaxFrame = DEFAULT_MAX_FRAME_SIZE;
  private peerMaxHeaderList = Infinity;
  private gotSettings = false;
  /** @internal When our SETTINGS must have been acknowledged (the shared deadline sweeper: see expire). */
  deadline = 0;

  // Connection flow control.
  private connSendWindow = DEFAULT_WINDOW;
  private connRecvWindow = DEFAULT_WINDOW;
  private connUnacked = 0;

  // Stream ids and lifecycle.
  private nextStreamId = 1;
  private lastPeerStreamId = 0;
  /** Made on the first reset (most connections never reset a stream). */
  private recentlyReset: Set<number> | null = null;
  /** Server: ranges [first, last, first, last, ...] of client stream ids skipped, so implicitly closed (RFC 9113 §5.1.1). */
  private readonly skipped: number[] = [];
  private sentGoaway = false;
  private recvGoaway = false;
  private dead = false;
  private tClosed = false;
  private readDone = false;
  private drainTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly readyD = Promise.withResolvers<void>();
  private readonly closedD = Promise.withResolvers<void>();

  // Reading.
  /** What frames are read into: `small`, or a large (pooled) one while frames or bodies stream in. */
  private rbuf: Uint8Array;
  private readonly small: Uint8Array;
  private rpos = 0;
  private rend = 0;
  /** Bytes the last transport read brought. */
  private lastRead = 0;
  /** Open streams whose peer may still send DATA (not ended its side). */
  private receiving = 0;
  private prefaceLeft: number;
  /** Stream of a header block awaiting CONTINUATION frames, else 0. */
  private contStream = 0;
  private contFlags = 0;
  private contBuf: Uint8Array = EMPTY;
  private contLen = 0;

  // Writing.
  // Their buffers come from the pool with the first frame and go back once written (idle: none).
  private out = new FrameWriter(pool16k);
  private spare = new FrameWriter(pool16k);
  private writing = false;
  private flushQueued = false;
  private closeAfterFlush = false;
  /** False from our graceful GOAWAY until the PING sent after it is acknowledged (or GOAWAY_ACK_MS). */
  private goawayAcked = true;
  /** Set when a transport write failed: nothing more is sent. */
  private outErr: H2Error | null = null;
  private readonly sendQueue: H2Stream[] = [];
  private pumping = false;
  private readonly flushFn = () => void this.flush();

  // Keepalive.
  private readonly kaInterval: number;
  private readonly kaTimeout: number;
  private kaTimer: ReturnType<typeof setTimeout> | undefined;
  /** Transport reads so far, and their count when the keepalive timer last looked. */
  private reads = 0;
  private kaReads = 0;
  private kaPinging = false;
  private readonly kaFn = () => this.keepaliveTick();
  /** maxBufferedOutput (Infinity: unbounded). */
  private readonly maxOut: number;

  private constructor(t: H2Transport, opts: H2Options, isServer: boolean) {
    this.t = t;
    this.readOp = readOpOf(t);
    this.isServer = isServer;
    this.maxConcurrent = opts.maxConcurrentStreams ?? 100;
    this.iws = Math.min(opts.initialWindowSize ?? 1 << 20, MAX_WINDOW);
    this.connWindowSize = Math.max(
      DEFAULT_WINDOW,
      Math.min(opts.connectionWindowSize ?? 4 << 20, MAX_WINDOW),
    );
    this.maxHeaderListSize = opts.maxHeaderListSize ?? 64 * 1024;
    this.enableConnect = isServer && !!opts.enableConnectProtocol;
    this.onStream = opts.onStream;
    this.onProtocolError = opts.onProtocolError;
    this.kaInterval = opts.keepaliveInterval ?? 0;
    this.kaTimeout = opts.keepaliveTimeout ?? 20_000;
    this.maxOut = opts.maxBufferedOutput === undefined
      ? Infinity
      : Math.max(opts.maxBufferedOutput, DEFAULT_MAX_FRAME_SIZE);
    this.prefaceLeft = isServer ? PREFACE.length : 0;
    this.ready = this.readyD.promise;
    this.ready.catch(noop);
    this.closed = this.closedD.promise;

    const leftover = opts.leftover;
    this.rbuf = this.small = new Uint8Array(IDLE_READ_BUFFER);
    if (leftover && leftover.length > 0) {
      if (leftover.length > IDLE_READ_BUFFER) {
        this.rbuf = leftover.length <= pool64k.size / 2
          ? pool64k.take()
          : new Uint8Array(leftover.length + pool64k.size);
      }
      this.rbuf.set(leftover);
      this.rend = leftover.length;
    }

    if (!isServer) this.out.raw(PREFACE);
    const s: number[] = [];
    if (isServer) {
      s.push(SettingId.MAX_CONCURRENT_STREAMS, this.maxConcurrent);
    } else {
      s.push(SettingId.ENABLE_PUSH, 0);
    }
    s.push(SettingId.INITIAL_WINDOW_SIZE, this.iws, SettingId.MAX_HEADER_LIST_SIZE, this.maxHeaderListSize);
    if (this.enableConnect) s.push(SettingId.ENABLE_CONNECT_PROTOCOL, 1);
    this.out.settings(s);
    if (this.connWindowSize > DEFAULT_WINDOW) {
      this.out.windowUpdate(0, this.connWindowSize - DEFAULT_WINDOW);
      this.connRecvWindow = this.connWindowSize;
    }
    this.scheduleFlush();
    const settingsTimeout = opts.settingsTimeout ?? 10_000;
    if (settingsTimeout > 0) arm(this, settingsTimeout);
    if (this.kaInterval > 0) this.kaTimer = setTimeout(this.kaFn, this.kaInterval);
    void this.readLoop();
  }

  /** @internal The SETTINGS acknowledgement did not come in time (RFC 9113 §6.5.3). */
  expire(): void {
    if (!this.settingsAcked) this.connError(ErrorCode.SETTINGS_TIMEOUT, "SETTINGS not acknowledged");
  }

  /** Server role: expects the 24-byte client preface, then SETTINGS. */
  static server(t: H2Transport, opts: H2Options = {}): H2Connection {
    return new H2Connection(t, opts, true);
  }

  /** Client role: sends the preface and SETTINGS (ENABLE_PUSH=0). */
  static client(t: H2Transport, opts: H2Options = {}): H2Connection {
    return new H2Connection(t, opts, false);
  }

  /** From peer SETTINGS, default 100 until known (unlimited → a large number). */
  get peerMaxConcurrentStreams(): number {
    return this.peerMaxConcurrent;
  }

  /** The peer's SETTINGS_MAX_HEADER_LIST_SIZE; Infinity until it sets one. */
  get peerMaxHeaderListSize(): number {
    return this.peerMaxHeaderList;
  }

  /** Open (or half-closed) streams. */
  get activeStreams(): number {
    return this.streams.size;
  }

  /** GOAWAY sent or received, or closed: no new streams. */
  get goingAway(): boolean {
    return this.sentGoaway || this.recvGoaway || this.dead || this.outErr !== null;
  }

  /** Client: opens a stream with a request HEADERS block. Throws H2Error(REFUSED_STREAM) when going away/closed. */
  request(fields: string[], endStream: boolean): H2Stream {
    if (this.goingAway) throw new H2Error(ErrorCode.REFUSED_STREAM, "HTTP/2 connection is going away");
    if (this.isServer) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "a server connection cannot open streams");
    const id = this.nextStreamId;
    if (id > MAX_WINDOW) {
      // Stream ids exhausted: this connection takes no more requests.
      this.goaway();
      throw new H2Error(ErrorCode.REFUSED_STREAM, "HTTP/2 stream ids exhausted");
    }
    // Checked and encoded first: a field list that cannot be sent fails the request before a stream exists.
    this.checkListSize(fields);
    const block = this.encode(fields);
    this.nextStreamId += 2;
    const s = new H2Stream(this, id, this.peerIws, this.peerViewIws, true);
    this.streams.set(id, s);
    // The response is to come.
    s._rx = true;
    this.receiving++;
    this.out.headers(id, block, endStream, this.peerMaxFrame);
    if (endStream) s._localEnded = true;
    this.scheduleFlush();
    return s;
  }

  /** Graceful: GOAWAY(last processed stream id, code); new peer streams refused; transport closed when the active streams finish. */
  goaway(code: number = ErrorCode.NO_ERROR): void {
    if (this.sentGoaway || this.dead) return;
    this.sentGoaway = true;
    this.out.goaway(this.lastPeerStreamId, code);
    // RFC 9113 6.8: streams the peer opened before it saw the GOAWAY are still on their way. A PING
    // sent after it comes back after them, so the transport stays open until its ACK (they get
    // REFUSED_STREAM, which the peer may retry, instead of a closed socket, which it may not).
    this.goawayAcked = false;
    this.out.ping(false, GOAWAY_PING, 0);
    const t = setTimeout(() => this.onGoawayAcked(), GOAWAY_ACK_MS);
    this.closed.then(() => clearTimeout(t));
    this.scheduleFlush();
  }

  /** Immediate: fail all streams, close the transport. */
  destroy(err?: Error): void {
    const e = err instanceof H2Error
      ? err
      : new H2Error(ErrorCode.CANCEL, err ? err.message : "HTTP/2 connection destroyed");
    this.teardown(e);
  }

  // ---------------------------------------------------------------- reading

  private async readLoop(): Promise<void> {
    let err: H2Error | null = null;
    try {
      if (this.rend > 0) this.parse();
      // After a connection error keep draining input until the GOAWAY is flushed and the transport closed.
      while (!this.tClosed) {
        this.roomToRead();
        const n = await this.readOp(this.rbuf.subarray(this.rend));
        if (n === null || n === 0) break; // EOF (the buffer always has room, so 0 is EOF too)
        this.reads++;
        this.lastRead = n;
        this.rend += n;
        this.parse();
      }
    } catch (e) {
      if (!this.tClosed) {
        err = new H2Error(ErrorCode.INTERNAL_ERROR, `HTTP/2 transport read failed: ${(e as Error)?.message}`);
      }
    }
    this.readDone = true;
    // No read in flight any more, and parsed frames left no views of it behind: the buffer can go.
    this.useSmall();
    this.teardown(err ?? new H2Error(ErrorCode.CANCEL, "HTTP/2 connection closed"));
  }

  /**
   * Picks the buffer for the next read. Nothing buffered: the small one, unless streams are
   * sending bodies and the last read was large (more is on its way). A frame in part: a large
   * one with room for the biggest frame.
   */
  private roomToRead(): void {
    if (this.rpos === this.rend) {
      this.rpos = this.rend = 0;
      if (this.receiving > 0 && this.lastRead >= IDLE_READ_BUFFER) {
        if (this.rbuf === this.small) this.rbuf = pool64k.take();
      } else this.useSmall();
      return;
    }
    if (this.rbuf.length - this.rend >= LOCAL_MAX_FRAME + 9) return;
    const part = this.rbuf.subarray(this.rpos, this.rend);
    if (this.rbuf === this.small) {
      this.rbuf = pool64k.take();
      this.rbuf.set(part);
    } else this.rbuf.copyWithin(0, this.rpos, this.rend);
    this.rend -= this.rpos;
    this.rpos = 0;
  }

  /** Back to the small read buffer (nothing buffered): a large one goes back to the pool. */
  private useSmall(): void {
    if (this.rbuf === this.small) return;
    pool64k.give(this.rbuf);
    this.rbuf = this.small;
    this.rpos = this.rend = 0;
  }

  private parse(): void {
    if (this.dead) {
      this.rpos = this.rend = 0;
      return;
    }
    const b = this.rbuf;
    if (this.prefaceLeft > 0) {
      const start = PREFACE.length - this.prefaceLeft;
      const n = Math.min(this.prefaceLeft, this.rend - this.rpos);
      for (let i = 0; i < n; i++) {
        if (b[this.rpos + i] !== PREFACE[start + i]) {
          this.connError(ErrorCode.PROTOCOL_ERROR, "invalid connection preface");
          return;
        }
      }
      this.prefaceLeft -= n;
      this.rpos += n;
      if (this.prefaceLeft > 0) return;
    }
    while (!this.dead) {
      const p = this.rpos;
      const avail = this.rend - p;
      if (avail < 9) break;
      const len = (b[p] << 16) | (b[p + 1] << 8) | b[p + 2];
      if (len > LOCAL_MAX_FRAME) {
        this.connError(ErrorCode.FRAME_SIZE_ERROR, "frame too large");
        return;
      }
      if (avail < 9 + len) break;
      const sid = ((b[p + 5] & 0x7f) << 24) | (b[p + 6] << 16) | (b[p + 7] << 8) | b[p + 8];
      this.rpos = p + 9 + len;
      this.onFrame(b[p + 3], b[p + 4], sid, p + 9, len);
    }
    if (this.rpos === this.rend) this.rpos = this.rend = 0;
  }

  private u32(off: number): number {
    const b = this.rbuf;
    return ((b[off] << 24) | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3]) >>> 0;
  }

  private onFrame(type: number, flags: number, sid: number, off: number, len: number): void {
    if (this.contStream !== 0 && type !== FrameType.CONTINUATION) {
      return this.connError(ErrorCode.PROTOCOL_ERROR, "expected CONTINUATION");
    }
    if (!this.gotSettings && (type !== FrameType.SETTINGS || (flags & Flag.ACK) !== 0)) {
      return this.connError(ErrorCode.PROTOCOL_ERROR, "first frame must be SETTINGS");
    }
    switch (type) {
      case FrameType.DATA:
        return this.onData(flags, sid, off, len);
      case FrameType.HEADERS:
        return this.onHeaders(flags, sid, off, len);
      case FrameType.PRIORITY:
        if (sid === 0) return this.connError(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0");
        if (len !== 5) return this.streamErrorId(sid, ErrorCode.FRAME_SIZE_ERROR);
        // Priorities are deprecated (RFC 9113 §5.3.2) and ignored, but a stream cannot depend on itself (§5.3.1).
        if ((this.u32(off) & 0x7fffffff) === sid) return this.streamErrorId(sid, ErrorCode.PROTOCOL_ERROR);
        return;
      case FrameType.RST_STREAM:
        return this.onRstStream(sid, off, len);
      case FrameType.SETTINGS:
        return this.onSettings(flags, sid, off, len);
      case FrameType.PUSH_PROMISE:
        // We advertise ENABLE_PUSH=0; a client never sends it.
        return this.connError(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE not allowed");
      case FrameType.PING:
        if (sid !== 0) return this.connError(ErrorCode.PROTOCOL_ERROR, "PING on a stream");
        if (len !== 8) return this.connError(ErrorCode.FRAME_SIZE_ERROR, "PING length");
        if ((flags & Flag.ACK) === 0) {
          this.out.ping(true, this.rbuf, off);
          this.scheduleFlush();
        } else if (!this.goawayAcked && this.isGoawayPing(off)) this.onGoawayAcked();
        return;
      case FrameType.GOAWAY:
        return this.onGoawayFrame(sid, off, len);
      case FrameType.WINDOW_UPDATE:
        return this.onWindowUpdate(sid, off, len);
      case FrameType.CONTINUATION:
        return this.onContinuation(flags, sid, off, len);
      default:
        return; // unknown frame types are ignored (RFC 9113 §4.1)
    }
  }

  /** Is sid a stream that was never opened (idle)? */
  private isIdle(sid: number): boolean {
    const peerInitiated = this.isServer ? (sid & 1) === 1 : (sid & 1) === 0;
    if (peerInitiated) return sid > this.lastPeerStreamId;
    return this.isServer || sid >= this.nextStreamId;
  }

  private onData(flags: number, sid: number, off: number, len: number): void {
    if (sid === 0) return this.connError(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0");
    let dataOff = off, dataLen = len;
    if ((flags & Flag.PADDED) !== 0) {
      if (len < 1) return this.connError(ErrorCode.FRAME_SIZE_ERROR, "DATA padding");
      const pad = this.rbuf[off];
      if (pad >= len) return this.connError(ErrorCode.PROTOCOL_ERROR, "DATA padding exceeds payload");
      dataOff = off + 1;
      dataLen = len - 1 - pad;
    }
    // Flow control counts the whole payload, padding included.
    this.connRecvWindow -= len;
    if (this.connRecvWindow < 0) {
      return this.connError(ErrorCode.FLOW_CONTROL_ERROR, "connection window exceeded");
    }
    const s = this.streams.get(sid);
    if (s === undefined) {
      this.returnConnCredit(len);
      if (this.isIdle(sid)) return this.connError(ErrorCode.PROTOCOL_ERROR, "DATA on idle stream");
      if (!this.recentlyReset?.has(sid)) this.streamErrorId(sid, ErrorCode.STREAM_CLOSED);
      return;
    }
    if (s.remoteEnded || (!this.isServer && !s._gotResponse)) {
      this.returnConnCredit(len);
      return this.streamError(s, s.remoteEnded ? ErrorCode.STREAM_CLOSED : ErrorCode.PROTOCOL_ERROR);
    }
    s._recvWindow -= len;
    if (s._recvWindow < 0) {
      this.returnConnCredit(len);
      return this.streamError(s, ErrorCode.FLOW_CONTROL_ERROR);
    }
    if (len !== dataLen) {
      // Padding is never consumed by the caller: credit it back now.
      this.returnConnCredit(len - dataLen);
      this.returnStreamCredit(s, len - dataLen);
    }
    if (dataLen > 0) {
      s._received += dataLen;
      if (this.isServer && s._contentLength >= 0 && s._received > s._contentLength) {
        this.returnConnCredit(dataLen);
        return this.streamError(s, ErrorCode.PROTOCOL_ERROR);
      }
      const chunk = this.rbuf.slice(dataOff, dataOff + dataLen);
      const r = s._reader;
      if (r !== null) {
        s._reader = null;
        this._consumed(s, dataLen);
        r.resolve(chunk);
      } else s._chunks.push(chunk);
    }
    if ((flags & Flag.END_STREAM) !== 0) this.remoteEnd(s);
  }

  private onHeaders(flags: number, sid: number, off: number, len: number): void {
    if (sid === 0) return this.connError(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0");
    let p = off, end = off + len;
    if ((flags & Flag.PADDED) !== 0) {
      if (len < 1) return this.connError(ErrorCode.FRAME_SIZE_ERROR, "HEADERS padding");
      end -= this.rbuf[p++];
    }
    if ((flags & Flag.PRIORITY) !== 0) {
      // Deprecated priority fields: skipped, but a stream cannot depend on itself (RFC 9113 §5.3.1).
      if (end >= p + 5 && (this.u32(p) & 0x7fffffff) === sid) flags |= SELF_DEPENDENT;
      p += 5;
    }
    if (end < p) return this.connError(ErrorCode.PROTOCOL_ERROR, "HEADERS padding exceeds payload");
    if ((flags & Flag.END_HEADERS) !== 0) {
      this.onHeaderBlock(sid, flags, this.rbuf.subarray(p, end));
      return;
    }
    this.contStream = sid;
    this.contFlags = flags;
    this.contLen = 0;
    this.appendCont(p, end - p);
  }

  private onContinuation(flags: number, sid: number, off: number, len: number): void {
    if (this.contStream === 0 || sid !== this.contStream) {
      return this.connError(ErrorCode.PROTOCOL_ERROR, "unexpected CONTINUATION");
    }
    if (!this.appendCont(off, len)) return;
    if ((flags & Flag.END_HEADERS) !== 0) {
      this.contStream = 0;
      const block = this.contBuf.subarray(0, this.contLen);
      if (this.contBuf.length > 64 * 1024) this.contBuf = EMPTY; // do not pin a large buffer
      this.onHeaderBlock(sid, this.contFlags, block);
    }
  }

  private appendCont(off: number, len: number): boolean {
    const need = this.contLen + len;
    if (need > 2 * this.maxHeaderListSize + 16384) {
      this.connError(ErrorCode.ENHANCE_YOUR_CALM, "header block too large");
      return false;
    }
    if (need > this.contBuf.length) {
      const b = new Uint8Array(Math.max(need, this.contBuf.length * 2, 4096));
      b.set(this.contBuf.subarray(0, this.contLen));
      this.contBuf = b;
    }
    this.contBuf.set(this.rbuf.subarray(off, off + len), this.contLen);
    this.contLen = need;
    return true;
  }

  private onHeaderBlock(sid: number, flags: number, block: Uint8Array): void {
    let fields: string[];
    try {
      // Decoded even for streams we refuse: the HPACK table must stay in sync.
      fields = this.dec.decode(block, this.maxHeaderListSize);
    } catch (e) {
      return this.connError(ErrorCode.COMPRESSION_ERROR, `HPACK: ${(e as Error)?.message}`);
    }
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if ((flags & SELF_DEPENDENT) !== 0 && !this.isServer) {
      const s = this.streams.get(sid);
      if (s !== undefined) this.streamError(s, ErrorCode.PROTOCOL_ERROR);
      return;
    }
    if (this.isServer) this.serverHeaders(sid, fields, this.dec.oversized, endStream, flags);
    else this.clientHeaders(sid, fields, endStream);
  }

  private serverHeaders(
    sid: number,
    fields: string[],
    oversized: boolean,
    endStream: boolean,
    flags: number,
  ): void {
    const existing = this.streams.get(sid);
    if (existing !== undefined) {
      if ((flags & SELF_DEPENDENT) !== 0) return this.streamError(existing, ErrorCode.PROTOCOL_ERROR);
      return this.trailersReceived(existing, fields, endStream);
    }
    if ((sid & 1) === 0) return this.connError(ErrorCode.PROTOCOL_ERROR, "even stream id from a client");
    if (sid <= this.lastPeerStreamId) {
      if (this.recentlyReset?.has(sid)) return; // trailers in flight for a stream we reset
      // A stream id lower than one already used, never opened itself: RFC 9113 §5.1.1.
      if (this.wasSkipped(sid)) return this.connError(ErrorCode.PROTOCOL_ERROR, "stream id went backwards");
      return this.connError(ErrorCode.STREAM_CLOSED, "HEADERS on a closed stream");
    }
    const expected = this.lastPeerStreamId === 0 ? 1 : this.lastPeerStreamId + 2;
    if (sid !== expected) this.noteSkipped(expected, sid - 2);
    this.lastPeerStreamId = sid;
    if ((flags & SELF_DEPENDENT) !== 0) return this.streamErrorId(sid, ErrorCode.PROTOCOL_ERROR);
    if (this.sentGoaway || this.dead || this.streams.size >= this.maxConcurrent) {
      return this.streamErrorId(sid, ErrorCode.REFUSED_STREAM);
    }
    // An oversized list was cut short by the decoder: deliver it anyway (the listener answers 431).
    const cl = oversized ? -1 : checkRequest(fields, this.enableConnect);
    if (cl === -2) return this.streamErrorId(sid, ErrorCode.PROTOCOL_ERROR);
    const s = new H2Stream(this, sid, this.peerIws, this.peerViewIws, false);
    s.headers = fields;
    s.oversized = oversized;
    s._contentLength = cl;
    s._tunnel = !oversized && checkedConnect;
    this.streams.set(sid, s);
    if (endStream) {
      s.remoteEnded = true;
      s.headersEnded = true;
      if (cl > 0) return this.streamError(s, ErrorCode.PROTOCOL_ERROR);
    } else {
      s._rx = true;
      this.receiving++;
    }
    if (this.onStream) {
      try {
        this.onStream(s);
      } catch {
        this._reset(s, ErrorCode.INTERNAL_ERROR, true);
      }
    }
  }

  private clientHeaders(sid: number, fields: string[], endStream: boolean): void {
    const s = this.streams.get(sid);
    if (s === undefined) {
      if (this.isIdle(sid)) return this.connError(ErrorCode.PROTOCOL_ERROR, "HEADERS on an idle stream");
      return; // a stream we already closed or reset
    }
    if (s._gotResponse) return this.trailersReceived(s, fields, endStream);
    if (s.remoteEnded) return this.streamError(s, ErrorCode.STREAM_CLOSED);
    const status = checkResponse(fields);
    if (status < 0) return this.streamError(s, ErrorCode.PROTOCOL_ERROR);
    if (status < 200) {
      // Interim (1xx) response: skipped; it must not end the stream.
      if (endStream) this.streamError(s, ErrorCode.PROTOCOL_ERROR);
      return;
    }
    s.headers = fields;
    s._gotResponse = true;
    // remoteEnded is set synchronously here, before `response` callbacks run.
    if (endStream) {
      s.headersEnded = true;
      this.remoteEnd(s);
    }
    s._resp!.resolve(fields);
  }

  private trailersReceived(s: H2Stream, fields: string[], endStream: boolean): void {
    if (s.remoteEnded) return this.streamError(s, ErrorCode.STREAM_CLOSED);
    if (!endStream || !checkTrailers(fields)) return this.streamError(s, ErrorCode.PROTOCOL_ERROR);
    s.trailers = fields;
    this.remoteEnd(s);
  }

  private remoteEnd(s: H2Stream): void {
    s.remoteEnded = true;
    this.unreceive(s);
    if (this.isServer && s._contentLength >= 0 && s._received !== s._contentLength) {
      return this.streamError(s, ErrorCode.PROTOCOL_ERROR);
    }
    const r = s._reader;
    if (r !== null) {
      s._reader = null;
      r.resolve(null);
    }
    if (s._localEnded) this.closeStream(s);
  }

  private onRstStream(sid: number, off: number, len: number): void {
    if (len !== 4) return this.connError(ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM length");
    if (sid === 0) return this.connError(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on stream 0");
    const s = this.streams.get(sid);
    if (s === undefined) {
      if (this.isIdle(sid)) this.connError(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on an idle stream");
      return;
    }
    this._reset(s, this.u32(off), false);
  }

  private onSettings(flags: number, sid: number, off: number, len: number): void {
    if (sid !== 0) return this.connError(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream");
    if ((flags & Flag.ACK) !== 0) {
      if (len !== 0) return this.connError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with payload");
      if (!this.settingsAcked) {
        disarm(this);
        // From here on the peer counts our advertised stream window, not the default.
        this.settingsAcked = true;
        const delta = this.iws - this.peerViewIws;
        this.peerViewIws = this.iws;
        if (delta !== 0) { for (const s of this.streams.values()) s._recvWindow += delta; }
      }
      return;
    }
    if (len % 6 !== 0) return this.connError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS length");
    const b = this.rbuf;
    let maxConcurrent = -1;
    for (let p = off; p < off + len; p += 6) {
      const id = (b[p] << 8) | b[p + 1];
      const v = this.u32(p + 2);
      switch (id) {
        case SettingId.HEADER_TABLE_SIZE:
          this.enc.setMaxTableSize(v);
          break;
        case SettingId.ENABLE_PUSH:
          if (v > 1 || (!this.isServer && v !== 0)) {
            return this.connError(ErrorCode.PROTOCOL_ERROR, "bad SETTINGS_ENABLE_PUSH");
          }
          break;
        case SettingId.MAX_CONCURRENT_STREAMS:
          maxConcurrent = v;
          break;
        case SettingId.INITIAL_WINDOW_SIZE: {
          if (v > MAX_WINDOW) {
            return this.connError(ErrorCode.FLOW_CONTROL_ERROR, "bad SETTINGS_INITIAL_WINDOW_SIZE");
          }
          const delta = v - this.peerIws;
          this.peerIws = v;
          if (delta !== 0) {
            // Open streams' send windows move by the difference (RFC 9113 §6.9.2); may go negative.
            for (const s of this.streams.values()) {
              s._sendWindow += delta;
              if (s._sendWindow > MAX_WINDOW) {
                return this.connError(ErrorCode.FLOW_CONTROL_ERROR, "stream window overflow");
              }
            }
            if (delta > 0) this.pump();
          }
          break;
        }
        case SettingId.MAX_FRAME_SIZE:
          if (v < DEFAULT_MAX_FRAME_SIZE || v > MAX_MAX_FRAME_SIZE) {
            return this.connError(ErrorCode.PROTOCOL_ERROR, "bad SETTINGS_MAX_FRAME_SIZE");
          }
          this.peerMaxFrame = v;
          break;
        case SettingId.ENABLE_CONNECT_PROTOCOL:
          if (v > 1) return this.connError(ErrorCode.PROTOCOL_ERROR, "bad SETTINGS_ENABLE_CONNECT_PROTOCOL");
          break;
        case SettingId.MAX_HEADER_LIST_SIZE:
          // Advisory (RFC 9113 §6.5.2), but honoured: a larger list is never sent (checkListSize).
          this.peerMaxHeaderList = v;
          break;
        default:
          break; // unknown settings are ignored
      }
    }
    this.out.settingsAck();
    this.scheduleFlush();
    if (maxConcurrent >= 0) this.peerMaxConcurrent = maxConcurrent;
    if (!this.gotSettings) {
      this.gotSettings = true;
      if (maxConcurrent < 0) this.peerMaxConcurrent = UNLIMITED_STREAMS;
      this.readyD.resolve();
    }
  }

  private onGoawayFrame(sid: number, off: number, len: number): void {
    if (sid !== 0) return this.connError(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream");
    if (len < 8) return this.connError(ErrorCode.FRAME_SIZE_ERROR, "GOAWAY length");
    const last = this.u32(off) & 0x7fffffff;
    const code = this.u32(off + 4);
    this.recvGoaway = true;
    // Our streams above `last` were never processed: safe to retry elsewhere.
    const refused: H2Stream[] = [];
    for (const s of this.streams.values()) {
      const ours = this.isServer ? (s.id & 1) === 0 : (s.id & 1) === 1;
      if (ours && s.id > last) refused.push(s);
    }
    for (const s of refused) {
      this.failStream(s, new H2Error(ErrorCode.REFUSED_STREAM, `stream ${s.id} not processed (GOAWAY)`));
    }
    try {
      this.onGoaway?.(last, code);
    } catch {
      // a callback failure must not break the read loop
    }
    if (this.streams.size === 0 && this.goawayAcked) this.closeSoon();
  }

  private onWindowUpdate(sid: number, off: number, len: number): void {
    if (len !== 4) return this.connError(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE length");
    const inc = this.u32(off) & 0x7fffffff;
    if (sid === 0) {
      if (inc === 0) return this.connError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
      this.connSendWindow += inc;
      if (this.connSendWindow > MAX_WINDOW) {
        return this.connError(ErrorCode.FLOW_CONTROL_ERROR, "window overflow");
      }
      if (this.sendQueue.length > 0) this.pump();
      return;
    }
    const s = this.streams.get(sid);
    if (s === undefined) {
      if (this.isIdle(sid)) this.connError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream");
      return;
    }
    if (inc === 0) return this.streamError(s, ErrorCode.PROTOCOL_ERROR);
    s._sendWindow += inc;
    if (s._sendWindow > MAX_WINDOW) return this.streamError(s, ErrorCode.FLOW_CONTROL_ERROR);
    if (s._pending.length > 0) this.pump();
  }

  // ---------------------------------------------------------- flow control

  /** @internal The caller consumed n bytes of s's data: return credit. */
  _consumed(s: H2Stream, n: number): void {
    this.returnConnCredit(n);
    this.returnStreamCredit(s, n);
  }

  private returnConnCredit(n: number): void {
    this.connUnacked += n;
    if (this.connUnacked >= this.connWindowSize >>> 1 && !this.dead) {
      this.out.windowUpdate(0, this.connUnacked);
      this.connRecvWindow += this.connUnacked;
      this.connUnacked = 0;
      this.scheduleFlush();
    }
  }

  private returnStreamCredit(s: H2Stream, n: number): void {
    if (s.remoteEnded || s._closed) return; // no more DATA will come on it
    s._unacked += n;
    if (s._unacked >= this.iws >>> 1) {
      this.out.windowUpdate(s.id, s._unacked);
      s._recvWindow += s._unacked;
      s._unacked = 0;
      this.scheduleFlush();
    }
  }

  // ---------------------------------------------------------------- sending

  /** @internal */
  _sendHeaders(s: H2Stream, fields: string[], endStream: boolean): void {
    if (s._writeErr) throw s._writeErr;
    if (s._localEnded || s._closed) throw new H2Error(ErrorCode.STREAM_CLOSED, `stream ${s.id} is closed`);
    let block: Uint8Array;
    try {
      this.checkListSize(fields);
      block = this.encode(fields);
    } catch (e) {
      this._reset(s, ErrorCode.INTERNAL_ERROR, true);
      throw e;
    }
    this.out.headers(s.id, block, endStream, this.peerMaxFrame);
    this.scheduleFlush();
    if (endStream) this.localEnd(s);
  }

  /** Our side of s ended (its last frame is queued). */
  private localEnd(s: H2Stream): void {
    s._localEnded = true;
    if (s.remoteEnded) this.closeStream(s);
    else if (this.isServer && !s._tunnel) {
      // A complete response while the request body is still coming: RST_STREAM(NO_ERROR) asks the
      // client to stop sending it (RFC 9113 §8.1); it keeps the response.
      this._reset(s, ErrorCode.NO_ERROR, true);
    }
  }

  /** Throws H2Error(INTERNAL_ERROR) when a field list is larger than the peer's SETTINGS_MAX_HEADER_LIST_SIZE. */
  private checkListSize(fields: string[]): void {
    if (this.peerMaxHeaderList !== Infinity && fieldSectionSize(fields) > this.peerMaxHeaderList) {
      throw new H2Error(
        ErrorCode.INTERNAL_ERROR,
        `header list larger than the peer's SETTINGS_MAX_HEADER_LIST_SIZE (${this.peerMaxHeaderList})`,
      );
    }
  }

  /** @internal */
  _write(s: H2Stream, data: Uint8Array): Promise<void> {
    if (s._writeErr) return Promise.reject(s._writeErr);
    if (s._localEnded || s._closed) {
      return Promise.reject(new H2Error(ErrorCode.STREAM_CLOSED, `stream ${s.id} is closed`));
    }
    if (data.length === 0) return RESOLVED;
    let off = 0;
    if (s._pending.length === 0) {
      // Fast path: everything fits in the windows now.
      const max = this.peerMaxFrame;
      while (off < data.length) {
        const n = Math.min(
          data.length - off,
          max,
          s._sendWindow,
          this.connSendWindow,
          this.maxOut - this.out.length,
        );
        if (n <= 0) break;
        this.out.data(s.id, false, data, off, n);
        s._sendWindow -= n;
        this.connSendWindow -= n;
        off += n;
      }
      if (off > 0) this.scheduleFlush();
      if (off === data.length) return RESOLVED;
    }
    const d = Promise.withResolvers<void>();
    s._pending.push({ data, off, end: false, trailers: null, resolve: d.resolve, reject: d.reject });
    this.enqueue(s);
    return d.promise;
  }

  /** @internal */
  _end(s: H2Stream, trailers: string[] | null): Promise<void> {
    if (s._writeErr) return Promise.reject(s._writeErr);
    if (s._localEnded || s._closed) {
      return Promise.reject(new H2Error(ErrorCode.STREAM_CLOSED, `stream ${s.id} is closed`));
    }
    if (s._pending.length === 0) {
      this.writeEnd(s, trailers);
      return RESOLVED;
    }
    const d = Promise.withResolvers<void>();
    s._pending.push({ data: EMPTY, off: 0, end: true, trailers, resolve: d.resolve, reject: d.reject });
    this.enqueue(s);
    return d.promise;
  }

  private writeEnd(s: H2Stream, trailers: string[] | null): void {
    if (trailers !== null && trailers.length > 0) {
      let block: Uint8Array;
      try {
        this.checkListSize(trailers);
        block = this.encode(trailers);
      } catch {
        // Trailers that cannot be encoded: the stream cannot end cleanly.
        return this._reset(s, ErrorCode.INTERNAL_ERROR, true);
      }
      this.out.headers(s.id, block, true, this.peerMaxFrame);
    } else this.out.data(s.id, true, EMPTY, 0, 0);
    this.scheduleFlush();
    this.localEnd(s);
  }

  /** One header block; a field HPACK cannot carry (a char above 255) throws H2Error(INTERNAL_ERROR). */
  private encode(fields: string[]): Uint8Array {
    try {
      return this.enc.encode(fields);
    } catch (e) {
      throw new H2Error(ErrorCode.INTERNAL_ERROR, `header field cannot be sent: ${(e as Error).message}`);
    }
  }

  private enqueue(s: H2Stream): void {
    if (!s._queued) {
      s._queued = true;
      this.sendQueue.push(s);
    }
  }

  /** Sends queued writes round-robin, one frame per stream per round, while the windows allow. */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    const q = this.sendQueue;
    let progress = true;
    let any = false;
    while (progress && q.length > 0) {
      progress = false;
      for (let i = 0; i < q.length;) {
        const s = q[i];
        if (this.sendOne(s)) progress = any = true;
        if (q[i] !== s) continue; // reset meanwhile (e.g. ended early), and so already dequeued
        if (s._pending.length === 0) {
          s._queued = false;
          q.splice(i, 1);
        } else i++;
      }
    }
    this.pumping = false;
    if (any) this.scheduleFlush();
  }

  /** Sends at most one DATA frame (or completes an entry) of s's first pending write. */
  private sendOne(s: H2Stream): boolean {
    const pw = s._pending[0];
    if (pw === undefined) return false;
    const rem = pw.data.length - pw.off;
    if (rem > 0) {
      const n = Math.min(
        rem,
        this.peerMaxFrame,
        s._sendWindow,
        this.connSendWindow,
        this.maxOut - this.out.length,
      );
      if (n <= 0) return false;
      this.out.data(s.id, false, pw.data, pw.off, n);
      s._sendWindow -= n;
      this.connSendWindow -= n;
      pw.off += n;
      if (n < rem) return true;
    }
    s._pending.shift();
    if (pw.end) this.writeEnd(s, pw.trailers);
    pw.resolve();
    return true;
  }

  // ------------------------------------------------------- stream lifecycle

  /** @internal */
  _reset(s: H2Stream, code: number, send: boolean): void {
    if (s._closed) return;
    if (send && !this.tClosed) {
      this.out.rstStream(s.id, code);
      this.rememberReset(s.id);
      this.scheduleFlush();
    }
    s.rstCode = code;
    const err = new H2Error(code, `stream ${s.id} reset (0x${code.toString(16)})`);
    if (!send && code === ErrorCode.NO_ERROR && s.remoteEnded) {
      // RST_STREAM(NO_ERROR) after a complete response only means "stop sending" (RFC 9113 §8.1):
      // the response body already received stays readable.
      s._writeErr = err;
      const pending = s._pending;
      s._pending = [];
      for (const pw of pending) pw.reject(err);
      if (s._queued) {
        s._queued = false;
        const i = this.sendQueue.indexOf(s);
        if (i >= 0) this.sendQueue.splice(i, 1);
      }
      this.closeStream(s);
      return;
    }
    this.failStream(s, err);
  }

  private noteSkipped(first: number, last: number): void {
    const k = this.skipped;
    if (k.length >= 2 * SKIPPED_MEMORY) k.splice(0, 2);
    k.push(first, last);
  }

  private wasSkipped(sid: number): boolean {
    const k = this.skipped;
    for (let i = 0; i < k.length; i += 2) if (sid >= k[i] && sid <= k[i + 1]) return true;
    return false;
  }

  private rememberReset(id: number): void {
    const r = this.recentlyReset ??= new Set();
    r.add(id);
    if (r.size > RESET_MEMORY) r.delete(r.values().next().value!);
  }

  /** The peer broke a rule on stream s: RST_STREAM(code). */
  private streamError(s: H2Stream, code: number): void {
    this.onProtocolError?.(code, "stream error", s.id);
    this._reset(s, code, true);
  }

  /** RST_STREAM(code) on sid, open or not: a stream error of the peer's, or a refusal (REFUSED_STREAM). */
  private streamErrorId(sid: number, code: number): void {
    if (code !== ErrorCode.REFUSED_STREAM) this.onProtocolError?.(code, "stream error", sid);
    const s = this.streams.get(sid);
    if (s !== undefined) return this._reset(s, code, true);
    this.out.rstStream(sid, code);
    this.rememberReset(sid);
    this.scheduleFlush();
  }

  /** Fails pending reads/writes/response of s with err and closes it. */
  private failStream(s: H2Stream, err: H2Error): void {
    if (s._closed) return;
    let dropped = 0;
    for (const c of s._chunks) dropped += c.length;
    if (dropped > 0) {
      s._chunks.length = 0;
      this.returnConnCredit(dropped);
    }
    if (!s.remoteEnded || dropped > 0) s._readErr = err;
    s._writeErr = err;
    const r = s._reader;
    if (r !== null) {
      s._reader = null;
      r.reject(err);
    }
    if (s._pending.length > 0) {
      const pending = s._pending;
      s._pending = [];
      for (const pw of pending) pw.reject(err);
    }
    if (s._queued) {
      s._queued = false;
      const i = this.sendQueue.indexOf(s);
      if (i >= 0) this.sendQueue.splice(i, 1);
    }
    if (s._resp !== null && !s._gotResponse) s._resp.reject(err);
    this.closeStream(s);
  }

  private closeStream(s: H2Stream): void {
    if (s._closed) return;
    s._closed = true;
    this.unreceive(s);
    this.streams.delete(s.id);
    s._done?.resolve();
    if (this.streams.size === 0 && (this.sentGoaway || this.recvGoaway) && !this.dead && this.goawayAcked) {
      this.closeSoon();
    }
  }

  /** s no longer counts as receiving (ended by the peer, or closed). */
  private unreceive(s: H2Stream): void {
    if (s._rx) {
      s._rx = false;
      this.receiving--;
    }
  }

  private isGoawayPing(off: number): boolean {
    for (let i = 0; i < 8; i++) if (this.rbuf[off + i] !== GOAWAY_PING[i]) return false;
    return true;
  }

  /** The peer has seen our GOAWAY (or we stopped waiting): close once no stream is left. */
  private onGoawayAcked(): void {
    if (this.goawayAcked) return;
    this.goawayAcked = true;
    if (this.streams.size === 0 && !this.dead) this.closeSoon();
  }

  // ------------------------------------------------------ connection close

  /** GOAWAY(code) and close: the peer broke a rule of the connection (`peer` false: we give up on it). */
  private connError(code: number, msg: string, peer = true): void {
    if (this.dead) return;
    if (peer) this.onProtocolError?.(code, msg, 0);
    if (!this.tClosed) {
      this.out.goaway(this.lastPeerStreamId, code, new TextEncoder().encode(msg));
      this.sentGoaway = true;
    }
    const err = new H2Error(code, `HTTP/2 connection error: ${msg}`);
    this.dead = true;
    this.failAll(err);
    this.closeSoon();
  }

  private failAll(err: H2Error): void {
    if (this.streams.size > 0) { for (const s of [...this.streams.values()]) this.failStream(s, err); }
    this.readyD.reject(err);
  }

  /** Closes the transport once pending output is written (bounded by a timer). */
  private closeSoon(): void {
    if (this.closeAfterFlush || this.tClosed) return;
    this.closeAfterFlush = true;
    this.drainTimer = setTimeout(() => this.closeTransport(), CLOSE_DRAIN_MS);
    this.scheduleFlush();
  }

  /**
   * A write failed: the peer closed or reset the connection. What it sent before may still be unread
   * (typically a GOAWAY that refuses our newest streams, which makes them safe to retry), so the read
   * loop gets a moment to take it in; its end, or the grace timer, then fails what is left.
   */
  private writeFailed(err: H2Error): void {
    if (this.tClosed) return this.maybeResolveClosed();
    this.outErr = err;
    this.out.length = 0;
    if (this.drainTimer !== undefined) clearTimeout(this.drainTimer);
    this.drainTimer = setTimeout(() => this.teardown(err), WRITE_FAIL_GRACE_MS);
  }

  private teardown(err: H2Error): void {
    this.clearTimers();
    this.dead = true;
    this.failAll(err);
    this.closeTransport();
    this.maybeResolveClosed();
  }

  /** Keepalive timer: a PING after a quiet interval; the connection closes when nothing answers it in time. */
  private keepaliveTick(): void {
    this.kaTimer = undefined;
    if (this.dead || this.tClosed) return;
    const quiet = this.reads === this.kaReads;
    this.kaReads = this.reads;
    if (this.kaPinging) {
      this.kaPinging = false;
      if (quiet) return this.connError(ErrorCode.NO_ERROR, "keepalive PING not answered", false);
    } else if (quiet) {
      this.out.ping(false, KEEPALIVE_PING, 0);
      this.scheduleFlush();
      this.kaPinging = true;
      this.kaTimer = setTimeout(this.kaFn, this.kaTimeout);
      return;
    }
    this.kaTimer = setTimeout(this.kaFn, this.kaInterval);
  }

  private clearTimers(): void {
    disarm(this);
    if (this.kaTimer !== undefined) clearTimeout(this.kaTimer);
    this.kaTimer = undefined;
  }

  private closeTransport(): void {
    this.clearTimers();
    if (this.drainTimer !== undefined) {
      clearTimeout(this.drainTimer);
      this.drainTimer = undefined;
    }
    if (this.tClosed) return;
    this.tClosed = true;
    this.dead = true;
    try {
      this.t.close();
    } catch {
      // already closed
    }
  }

  private maybeResolveClosed(): void {
    if (this.readDone && this.tClosed && !this.writing) this.closedD.resolve();
  }

  private scheduleFlush(): void {
    if (this.flushQueued || this.writing || this.outErr !== null) return;
    this.flushQueued = true;
    queueMicrotask(this.flushFn);
  }

  private async flush(): Promise<void> {
    this.flushQueued = false;
    if (this.writing) return;
    this.writing = true;
    try {
      while (this.out.length > 0 && !this.tClosed && this.outErr === null) {
        const w = this.out;
        this.out = this.spare;
        this.spare = w;
        const chunk = w.buf.subarray(0, w.length);
        let off = 0;
        while (off < chunk.length) off += await this.t.write(off === 0 ? chunk : chunk.subarray(off));
        w.length = 0;
        w.release();
        // Writers held back by maxBufferedOutput fill the other buffer while this one is written.
        if (this.sendQueue.length > 0) this.pump();
      }
    } catch (e) {
      this.writing = false;
      this.writeFailed(
        new H2Error(ErrorCode.INTERNAL_ERROR, `HTTP/2 transport write failed: ${(e as Error)?.message}`),
      );
      return;
    }
    this.writing = false;
    this.out.release();
    if (this.closeAfterFlush) this.closeTransport();
    this.maybeResolveClosed();
  }
}
