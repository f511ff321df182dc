/**
 * Buffered reading of HTTP/1.1 messages from a connection, and the body
 * readers for each framing (Content-Length, chunked, read-until-close).
 *
 * Body readers hand out views into the connection buffer (no copies); a view is
 * valid until the next `read()`, which is how the proxy uses them: write, await,
 * read again.
 */
import { HeaderList } from "../core/headers.ts";
import type { BodyReader } from "../core/body.ts";
import type { BufferPool } from "../net/buffer_pool.ts";
import { type ReadOp, readOpOf } from "../net/read_op.ts";

/** Raised for malformed framing; `status` is what the peer should be told. */
export class FramingError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** A full buffer at its size limit: no room for the rest of a head. */
const HEAD_TOO_LARGE = new FramingError(431, "message head too large");

/** A connection plus its read buffer window `buf[start, end)`. */
export class ConnReader {
  buf: Uint8Array;
  start = 0;
  end = 0;
  /** Set when the peer closed its side (read returned EOF). */
  eof = false;
  /**
   * A read issued early (the HTTP/1.1 engine's disconnect detector). The next
   * fill() joins it instead of starting a second read into the same buffer.
   */
  pending: Promise<number> | null = null;
  /**
   * With a pool: the small buffer an idle connection reads into (see idle()), else null.
   * The full-size buffer is taken from the pool when bytes need room and given back once idle.
   */
  private readonly small: Uint8Array | null;
  /**
   * The full-size buffer in use was handed out in views that someone may still hold (a request
   * body the handler did not read to its end): it is not given back to the pool, only dropped.
   */
  private tainted = false;
  /** The connection's read op (src/net/read_op.ts: not Deno's Conn.read wrapper, whose Set churns old space). */
  private readonly read: ReadOp;

  /**
   * @param size the buffer size (`pool.size` when a pool is given)
   * @param pool where full-size buffers come from and go back to; with it the reader starts on a
   *   small buffer of `idleSize` bytes, enough for most request heads, and reads bodies with a
   *   pooled one (see fillBody)
   */
  constructor(
    readonly conn: Deno.Conn,
    size = 64 * 1024,
    private readonly pool: BufferPool | null = null,
    idleSize = 1024,
  ) {
    this.small = pool === null ? null : new Uint8Array(Math.min(idleSize, pool.size));
    this.buf = this.small ?? new Uint8Array(size);
    this.read = readOpOf(conn);
  }

  get available(): number {
    return this.end - this.start;
  }

  /**
   * Reads more bytes after `end`, compacting or growing the buffer (up to
   * `maxSize`) when full. Resolves with the number of bytes read; 0 on EOF.
   * Not an async function: an idle connection waits in here, and each
   * suspended async frame costs it a few hundred bytes.
   */
  fill(maxSize = this.buf.length): Promise<number> {
    if (this.pending !== null) {
      const p = this.pending;
      this.pending = null;
      return p;
    }
    const into = this.room(maxSize);
    return into === null ? Promise.reject(HEAD_TOO_LARGE) : this.read(into).then(this.onRead);
  }

  /**
   * fill() for a caller that awaits the read itself: the read's raw result,
   * which the caller passes to {@linkcode filled} before anything else reads
   * the buffer. One promise and one microtask less per read than fill()'s
   * `.then`. Only when no read is pending (the upstream side has none).
   */
  readMore(maxSize = this.buf.length): Promise<number | null> {
    const into = this.room(maxSize);
    return into === null ? Promise.reject(HEAD_TOO_LARGE) : this.read(into);
  }

  /** Records the result of {@linkcode readMore}: the number of bytes read, 0 on EOF. */
  filled(n: number | null): number {
    return this.onRead(n);
  }

  /**
   * Issues the next read now and parks it as {@linkcode pending}, with `then`
   * and `otherwise` run in the same promise step as the reader's own
   * bookkeeping (one promise less than `fill().then(then, otherwise)`).
   * Only when no read is pending.
   */
  park(then: (n: number) => number, otherwise: (e: unknown) => number): void {
    const into = this.room(this.buf.length);
    if (into === null) {
      // As a failed read: `otherwise` runs later, not inside the caller.
      this.pending = Promise.reject(HEAD_TOO_LARGE).catch(otherwise);
      return;
    }
    this.parked = then;
    this.pending = this.read(into).then(this.onParkedRead, otherwise);
  }

  /** Where the next read goes, after compacting or growing the buffer when full; null past `maxSize`. */
  private room(maxSize: number): Uint8Array | null {
    if (this.end === this.buf.length) {
      if (this.start > 0) {
        this.buf.copyWithin(0, this.start, this.end);
        this.end -= this.start;
        this.start = 0;
      } else if (this.buf.length < maxSize) {
        this.moveTo(
          this.buf === this.small && maxSize >= this.pool!.size
            ? this.pool!.take()
            : new Uint8Array(Math.min(maxSize, this.buf.length * 2)),
        );
      } else {
        return null;
      }
    }
    // From offset 0 the buffer itself is the target: a view less per read (most reads start there).
    return this.end === 0 ? this.buf : this.buf.subarray(this.end);
  }

  // The buffer passed is never empty: 0 (the op) or null (a wrapped connection) is EOF.
  private readonly onRead = (n: number | null): number => {
    if (n === null || n === 0) {
      this.eof = true;
      return 0;
    }
    this.end += n;
    return n;
  };

  private parked: ((n: number) => number) | null = null;
  private readonly onParkedRead = (n: number | null): number => this.parked!(this.onRead(n));

  /**
   * The last read filled the small buffer to its end: more bytes are likely waiting. A body
   * reader then reads more (with a full-size buffer) before handing out a part of what was
   * declared, so that a body chunk comes whole, as it would have with a large buffer.
   */
  get cramped(): boolean {
    return this.buf === this.small && this.end === this.buf.length && this.pending === null;
  }

  /** fill() for body bytes: read with a full-size buffer, not the small idle one. */
  fillBody(): Promise<number> {
    if (this.buf === this.small && this.pending === null) this.moveTo(this.pool!.take());
    return this.fill();
  }

  /** Copies the unread bytes to the start of `next`, which becomes the buffer; a full-size one left goes back. */
  private moveTo(next: Uint8Array): void {
    next.set(this.buf.subarray(this.start, this.end));
    this.end -= this.start;
    this.start = 0;
    this.release();
    this.buf = next;
  }

  /** The full-size buffer is no longer used: back to the pool, unless views of it may still be held. */
  private release(): void {
    const b = this.buf;
    if (b === this.small) return;
    if (this.pool !== null && !this.tainted) this.pool.give(b);
    this.tainted = false;
  }

  /** Drops consumed bytes so a fresh message starts at offset 0 when the buffer is empty. */
  reset(): void {
    // Not while a read is in flight: it writes at the old `end`.
    if (this.start === this.end && this.pending === null) this.start = this.end = 0;
  }

  /**
   * Between messages: with nothing buffered and no read in flight, the
   * full-size buffer goes back to the pool and the next read (an idle wait,
   * as a rule) uses the small one. `viewsOut`: the last message's body was
   * handed out in views that may still be held (see `tainted`).
   */
  idle(viewsOut = false): void {
    if (viewsOut && this.buf !== this.small) this.tainted = true;
    if (this.start !== this.end || this.pending !== null) return;
    this.start = this.end = 0;
    if (this.small !== null && this.buf !== this.small) {
      this.release();
      this.buf = this.small;
    }
  }
}

/** Reads exactly `length` body bytes. */
export class LengthBodyReader implements BodyReader {
  remaining: number;
  trailers: HeaderList | null = null;
  /** Called before the first read (HTTP/1.1 `Expect: 100-continue`). */
  onFirstRead: (() => Promise<void>) | null = null;
  /** Called after each read with the byte count (timeouts, accounting), and with 0 once complete. */
  onProgress: ((n: number) => void) | null = null;
  /** read() answered null: whoever read the body is done with the views it was given. */
  ended = false;

  constructor(readonly r: ConnReader, readonly length: number) {
    this.remaining = length;
  }

  async read(): Promise<Uint8Array | null> {
    if (this.remaining === 0) {
      this.ended = true;
      return null;
    }
    const r = this.r;
    if (r.available === 0 || (r.available < this.remaining && r.cramped)) {
      if (this.onFirstRead !== null) {
        const f = this.onFirstRead;
        this.onFirstRead = null;
        await f();
      }
      r.reset();
      if (await r.fillBody() === 0) throw new FramingError(400, "body ended early");
    }
    const n = Math.min(r.available, this.remaining);
    const view = r.buf.subarray(r.start, r.start + n);
    r.start += n;
    this.remaining -= n;
    this.onProgress?.(n);
    if (this.remaining === 0) this.onProgress?.(0); // complete
    return view;
  }
}

/** Reads until the peer closes (HTTP/1.0-style response bodies). */
export class CloseDelimitedReader implements BodyReader {
  readonly length = -1;
  trailers: HeaderList | null = null;
  done = false;

  constructor(readonly r: ConnReader) {}

  async read(): Promise<Uint8Array | null> {
    if (this.done) return null;
    const r = this.r;
    if (r.available === 0) {
      r.reset();
      if (await r.fillBody() === 0) {
        this.done = true;
        return null;
      }
    }
    const view = r.buf.subarray(r.start, r.end);
    r.start = r.end;
    return view;
  }
}

const HEX = new Int8Array(256).fill(-1);
for (let i = 0; i < 10; i++) HEX[48 + i] = i;
for (let i = 0; i < 6; i++) HEX[97 + i] = HEX[65 + i] = 10 + i;

/**
 * Strict chunked decoder (RFC 9112 7.1): 1–12 hex digits, chunk extensions
 * validated and dropped, CRLF required after each chunk, trailers parsed into
 * a HeaderList. Yields decoded data only; the framing is never forwarded.
 */
export class ChunkedBodyReader implements BodyReader {
  readonly length = -1;
  trailers: HeaderList | null = null;
  /** Bytes left in the current chunk; -1 = expecting a size line; -2 = expecting the CRLF after data. */
  private left = -1;
  private done = false;
  onFirstRead: (() => Promise<void>) | null = null;
  onProgress: ((n: number) => void) | null = null;

  constructor(readonly r: ConnReader, readonly maxTrailerBytes = 16 * 1024, readonly isRequest = true) {}

  /** read() answered null: whoever read the body is done with the views it was given. */
  get ended(): boolean {
    return this.done;
  }

  private get errStatus(): number {
    return this.isRequest ? 400 : 502;
  }

  private async more(): Promise<void> {
    if (this.onFirstRead !== null) {
      const f = this.onFirstRead;
      this.onFirstRead = null;
      await f();
    }
    if (await this.r.fillBody() === 0) throw new FramingError(this.errStatus, "chunked body ended early");
  }

  /** Reads a CRLF-terminated line; returns [start, end) of its content within r.buf. */
  private async line(limit: number): Promise<number> {
    const r = this.r;
    for (;;) {
      const lf = r.buf.indexOf(10, r.start);
      if (lf !== -1 && lf < r.end) {
        if (lf === r.start || r.buf[lf - 1] !== 13) {
          throw new FramingError(this.errStatus, "bare LF in chunked body");
        }
        return lf - 1;
      }
      if (r.end - r.start > limit) throw new FramingError(this.errStatus, "chunk line too long");
      await this.more();
    }
  }

  async read(): Promise<Uint8Array | null> {
    if (this.done) return null;
    const r = this.r;
    if (this.left === -2) {
      // Data is handed out before its trailing CRLF is verified so the view stays valid;
      // a bad CRLF still fails the body before it completes, so nothing is smuggled.
      while (r.available < 2) {
        r.reset();
        await this.more();
      }
      if (r.buf[r.start] !== 13 || r.buf[r.start + 1] !== 10) {
        throw new FramingError(this.errStatus, "missing CRLF after chunk data");
      }
      r.start += 2;
      this.left = -1;
    }
    if (this.left === -1) {
      const end = await this.line(4096);
      let p = r.start, size = 0, digits = 0;
      for (; p < end; p++) {
        const h = HEX[r.buf[p]];
        if (h < 0) break;
        size = size * 16 + h;
        if (++digits > 12) throw new FramingError(this.errStatus, "chunk size too large");
      }
      if (digits === 0) throw new FramingError(this.errStatus, "malformed chunk size");
      if (p < end) {
        // chunk-ext: BWS ";" ... — validate it holds no control bytes, then ignore it.
        while (p < end && (r.buf[p] === 32 || r.buf[p] === 9)) p++;
        if (r.buf[p] !== 59) throw new FramingError(this.errStatus, "malformed chunk size");
        for (; p < end; p++) {
          const c = r.buf[p];
          if ((c < 32 && c !== 9) || c === 127) {
            throw new FramingError(this.errStatus, "invalid chunk extension");
          }
        }
      }
      r.start = end + 2;
      if (size === 0) {
        await this.readTrailers();
        this.done = true;
        this.onProgress?.(0); // complete
        return null;
      }
      this.left = size;
    }
    if (r.available === 0 || (r.available < this.left && r.cramped)) {
      r.reset();
      await this.more();
    }
    const n = Math.min(r.available, this.left);
    const view = r.buf.subarray(r.start, r.start + n);
    r.start += n;
    this.left -= n;
    if (this.left === 0) {
      // The CRLF after the data: checked now when already buffered (so bad framing fails before
      // the data is forwarded), else on the next read. Moving r.start keeps `view` valid.
      if (r.available >= 2) {
        if (r.buf[r.start] !== 13 || r.buf[r.start + 1] !== 10) {
          throw new FramingError(this.errStatus, "missing CRLF after chunk data");
        }
        r.start += 2;
        this.left = -1;
      } else this.left = -2;
    }
    this.onProgress?.(n);
    return view;
  }

  private async readTrailers(): Promise<void> {
    const r = this.r;
    let total = 0;
    const trailers = new HeaderList();
    for (;;) {
      const end = await this.line(this.maxTrailerBytes);
      if (end === r.start) {
        r.start = end + 2;
        break;
      }
      total += end - r.start + 2;
      if (total > this.maxTrailerBytes) throw new FramingError(this.errStatus, "trailers too large");
      const lineText = String.fromCharCode.apply(null, r.buf.subarray(r.start, end) as unknown as number[]);
      const colon = lineText.indexOf(":");
      const c0 = lineText.charCodeAt(0);
      if (colon <= 0 || c0 === 32 || c0 === 9 || /[\s]/.test(lineText.slice(0, colon))) {
        throw new FramingError(this.errStatus, "malformed trailer field");
      }
      const value = lineText.slice(colon + 1).trim();
      // deno-lint-ignore no-control-regex
      if (/[\x00-\x08\x0a-\x1f\x7f]/.test(value)) {
        throw new FramingError(this.errStatus, "invalid trailer value");
      }
      trailers.append(lineText.slice(0, colon), value);
      r.start = end + 2;
    }
    this.trailers = trailers.size > 0 ? trailers : null;
  }
}

/** Writes all of `data`, looping over partial writes. */
export async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(off === 0 ? data : data.subarray(off));
}

/**
 * Finishes a partial write: hot paths do `const n = await conn.write(d)` inline
 * (one promise instead of two) and call this only when `n < d.length`.
 */
export async function writeRest(conn: Deno.Conn, data: Uint8Array, done: number): Promise<void> {
  while (done < data.length) done += await conn.write(data.subarray(done));
}
