/**
 * One HTTP/1.1 exchange on a pooled upstream connection.
 *
 * Bodies stream both ways without being held whole: request chunks are
 * re-framed (chunked bodies re-encoded, never forwarded verbatim) and written
 * as they arrive; the response is read and written chunk by chunk, Content-Length
 * bodies as views of the connection buffer. The upload runs concurrently with
 * reading the response so an early upstream answer (say 413 during an upload)
 * is relayed instead of becoming a 502.
 */
import type { RequestContext } from "../core/context.ts";
import { type BodyReader, DONE, type RawHeadWriter, type ResponseWriter } from "../core/body.ts";
import { armAt, disarm } from "../core/deadline.ts";
import { BodyLimitError } from "../core/body_limit.ts";
import { findHeadEnd, type ParsedResponse, parseResponseHead, tokenList } from "../http1/parse.ts";
import {
  ChunkedBodyReader,
  CloseDelimitedReader,
  FramingError,
  writeAll,
  writeRest,
} from "../http1/reader.ts";
import { encodeLatin1Into, headText } from "../http1/serialize.ts";
import type { PooledConn } from "../upstream/pool.ts";
import { copyResponseHead, filterResponseHeaders } from "./header_policy.ts";
import { tunnel } from "./tunnel.ts";

const MAX_RESPONSE_HEAD = 64 * 1024;

/** Why an exchange failed. */
export class UpstreamFailure extends Error {
  constructor(
    readonly kind: "refused" | "reset" | "timeout" | "protocol" | "client" | "status",
    message: string,
    /** Nothing was received: a fresh connection may retry (idempotent only). */
    readonly retryableStale = false,
    readonly status = 0,
  ) {
    super(message);
  }
}

/**
 * One request/response exchange on `pc`: request head (+ body) out, response
 * streamed back to the client. Returns the upstream status; throws
 * UpstreamFailure when it fails before the response head was relayed.
 * A status in `discard` (a retry will follow) is not relayed: the connection
 * is dropped and UpstreamFailure("status", ..., status) thrown.
 */
export async function exchange(
  ctx: RequestContext,
  pc: PooledConn,
  head: string,
  perTryTimeout: number,
  totalDeadline: number,
  discard: ReadonlySet<number> | null = null,
  /** Date.now() of the caller when it just read it (one clock read less per request). */
  now = Date.now(),
): Promise<number> {
  pc.begin();
  ctx.onAbort = pc.onClientAbort;
  let reusable = false;
  try {
    // Head, plus the first body bytes when they are at hand, in one write.
    let o = encodeLatin1Into(head, pc.out, 0);
    if (o === -1) {
      pc.out = new Uint8Array(head.length + 16 * 1024);
      o = encodeLatin1Into(head, pc.out, 0);
    }
    const body = ctx.body;
    armAt(pc, Math.min(totalDeadline, now + perTryTimeout));
    let upload: Promise<void> | null = null;
    if (body.length === 0) {
      try {
        const data = pc.out.subarray(0, o);
        const n = await pc.conn.write(data);
        if (n < o) await writeRest(pc.conn, data, n);
      } catch (e) {
        const f = toFailure(e, pc);
        throw new UpstreamFailure(f.kind, f.message, f.kind === "reset");
      }
      pc.uploadDone = true;
    } else {
      upload = sendBody(body, pc, o);
    }
    // The final response head, waited for here rather than in an async helper: one async frame
    // and one promise less per request.
    let res = responseHeadIn(pc);
    for (let received = false; res === null; received = true) {
      let n: number;
      try {
        // The read's own promise awaited (readMore/filled): no `.then` step per read.
        const got = await pc.r.readMore(MAX_RESPONSE_HEAD + 4);
        n = pc.r.filled(got);
      } catch (e) {
        throw headReadFailure(e, pc, received);
      }
      if (n === 0) throw headEndFailure(pc, ctx, received);
      res = responseHeadIn(pc);
    }
    if (res.status === 101) {
      // A tunnel opens only for the upgrade Loom forwarded, to the protocol it named.
      if (ctx.upgrade === undefined) throw new UpstreamFailure("protocol", "unexpected 101 from upstream");
      if (!upgradeAnswered(ctx.upgrade, res.headers.get("upgrade"))) {
        throw new UpstreamFailure("protocol", "101 to a protocol the client did not ask for");
      }
      disarm(pc);
      filterResponseHeaders(res.headers, res.connection, "1.1", true);
      await tunnel(ctx, pc, res);
      return 101;
    }
    if (discard !== null && discard.has(res.status)) {
      // Not reusable (reusable stays false): the unread body goes with the connection.
      throw new UpstreamFailure("status", "upstream answered " + res.status, false, res.status);
    }
    const noBody = ctx.method === "HEAD" || res.status === 204 || res.status === 304;
    const r = pc.r;
    const length = noBody ? (res.chunked ? -1 : res.contentLength) : res.chunked ? -1 : res.contentLength;
    writeResponseHead(ctx, res, r.buf, length);
    let closeDelimited = false;
    if (noBody) {
      // HEAD and 304 keep the representation's length; the writer sends no body.
      await ctx.res.end(null);
    } else if (!res.chunked && res.contentLength >= 0) {
      // Content-Length: pass views of the connection buffer straight through.
      let remaining = res.contentLength;
      while (remaining > 0) {
        if (r.available === 0) {
          r.reset();
          let n: number;
          try {
            armAt(pc, Math.min(totalDeadline, Date.now() + perTryTimeout));
            n = r.filled(await r.readMore());
          } catch (e) {
            throw toFailure(e, pc);
          }
          if (n === 0) {
            throw pc.clientGone ? CLIENT_GONE : new UpstreamFailure("reset", "upstream closed mid-body");
          }
        }
        const take = r.available < remaining ? r.available : remaining;
        const view = r.buf.subarray(r.start, r.start + take);
        r.start += take;
        remaining -= take;
        try {
          await ctx.res.write(view);
        } catch {
          throw CLIENT_GONE;
        }
      }
      // The HTTP/1.1 writer's end has nothing left to write once the body went out: not awaited then.
      const ended = ctx.res.end(null);
      if (ended !== DONE) await ended;
    } else {
      const reader: BodyReader = res.chunked
        ? new ChunkedBodyReader(r, 16 * 1024, false)
        : new CloseDelimitedReader(r);
      closeDelimited = !res.chunked;
      for (;;) {
        let chunk: Uint8Array | null;
        try {
          armAt(pc, Math.min(totalDeadline, Date.now() + perTryTimeout));
          chunk = await reader.read();
        } catch (e) {
          throw pc.clientGone ? CLIENT_GONE : toFailure(e, pc);
        }
        if (chunk === null) break;
        try {
          await ctx.res.write(chunk);
        } catch {
          throw CLIENT_GONE;
        }
      }
      await ctx.res.end(reader.trailers);
    }
    disarm(pc);
    if (upload !== null && !pc.uploadDone) {
      // Early response: stop the upload; the client connection cannot be reused.
      pc.close();
      await upload;
      ctx.res.abort();
    }
    reusable = pc.uploadDone && !res.close && !closeDelimited && r.available === 0 && res.minor === 1 &&
      !pc.closed;
    return res.status;
  } finally {
    disarm(pc);
    ctx.onAbort = null;
    pc.pool.release(pc, reusable);
  }
}

/**
 * Whether a 101's Upgrade (`answer`) names a protocol of the request's Upgrade
 * (`asked`), compared without case ("websocket", "WebSocket").
 */
export function upgradeAnswered(asked: string, answer: string | undefined): boolean {
  if (answer === undefined) return false;
  const offered = tokenList(asked);
  return tokenList(answer).some((p) => offered.includes(p));
}

/** The client went away: nothing more to answer. */
export const CLIENT_GONE = new UpstreamFailure("client", "client went away");
const VIA_11 = new TextEncoder().encode("via: 1.1 loom\r\n");
const VIA_10 = new TextEncoder().encode("via: 1.0 loom\r\n");
let headScratch = new Uint8Array(16 * 1024);

/**
 * Starts the client response, by the response rule of header_policy.ts (Via
 * names the upstream's version). An HTTP/1.1 client gets the upstream's head
 * as bytes (kept lines copied, no string building); others get the filtered list.
 */
function writeResponseHead(ctx: RequestContext, res: ParsedResponse, src: Uint8Array, length: number): void {
  const w = ctx.res as Partial<RawHeadWriter> & ResponseWriter;
  if (w.writeHeadRaw !== undefined) {
    const via = res.minor === 0 ? VIA_10 : VIA_11;
    let n = copyResponseHead(src, res, headScratch, via);
    if (n === -1 && headScratch.length < 256 * 1024) {
      headScratch = new Uint8Array(256 * 1024);
      n = copyResponseHead(src, res, headScratch, via);
    }
    if (n !== -1) {
      // The writer copies the prefix at once, so the shared scratch is free again on return.
      w.writeHeadRaw(res.status, headScratch.subarray(0, n), length);
      return;
    }
  }
  filterResponseHeaders(res.headers, res.connection, res.minor === 0 ? "1.0" : "1.1", false);
  w.writeHead(res.status, res.headers, length, res.reason);
}

function toFailure(e: unknown, pc: PooledConn): UpstreamFailure {
  if (e instanceof UpstreamFailure) return e;
  if (pc.clientGone) return CLIENT_GONE;
  if (pc.timedOut) return new UpstreamFailure("timeout", "upstream timeout");
  if (e instanceof FramingError) {
    return new UpstreamFailure("protocol", "invalid upstream response: " + e.message);
  }
  return new UpstreamFailure("reset", "upstream connection reset");
}

/**
 * Streams the request body upstream after the head (already encoded in
 * pc.out[0, headLen)). Chunked/unknown-length bodies are re-encoded.
 * Never throws: a failed client read is recorded on `pc` and closes the
 * upstream connection so the response side notices; a failed upstream write
 * leaves the response side to read what the upstream answered.
 */
async function sendBody(body: BodyReader, pc: PooledConn, headLen: number): Promise<void> {
  const chunked = body.length < 0;
  let pending = headLen;
  try {
    for (;;) {
      let chunk: Uint8Array | null;
      try {
        chunk = await body.read();
      } catch (e) {
        pc.uploadError = e;
        pc.close();
        return;
      }
      if (chunk === null) break;
      if (chunk.length === 0) continue;
      const frame = chunked ? chunk.length.toString(16) + "\r\n" : "";
      const need = pending + frame.length + chunk.length + 2;
      if (need <= 64 * 1024) {
        if (pc.out.length < need) {
          const grown = new Uint8Array(Math.max(need, pc.out.length * 2));
          grown.set(pc.out.subarray(0, pending));
          pc.out = grown;
        }
        let o = pending;
        if (frame !== "") o = encodeLatin1Into(frame, pc.out, o);
        pc.out.set(chunk, o);
        o += chunk.length;
        if (chunked) {
          pc.out[o++] = 13;
          pc.out[o++] = 10;
        }
        await writeAll(pc.conn, pc.out.subarray(0, o));
        pending = 0;
      } else {
        if (pending > 0) await writeAll(pc.conn, pc.out.subarray(0, pending));
        pending = 0;
        if (frame !== "") await writeAll(pc.conn, new TextEncoder().encode(frame));
        await writeAll(pc.conn, chunk);
        if (chunked) await writeAll(pc.conn, CRLF);
      }
    }
    let tail = pending;
    if (chunked) {
      const t = body.trailers;
      const last = t !== null && t.size > 0 ? headText("0\r\n", t, "") : "0\r\n\r\n";
      if (pc.out.length < tail + last.length) {
        const grown = new Uint8Array(tail + last.length + 1024);
        grown.set(pc.out.subarray(0, tail));
        pc.out = grown;
      }
      tail = encodeLatin1Into(last, pc.out, tail);
    }
    if (tail > 0) await writeAll(pc.conn, pc.out.subarray(0, tail));
    pc.uploadDone = true;
  } catch {
    // Upstream write failed (closed, reset, early response): the response side reports it. The
    // connection stays open for that read: an upstream that answered (say 413) and closed while the
    // upload was still coming has its answer in our receive buffer, and the kernel hands it over
    // before the reset; closing here lost it (502 instead of 413). It is never reused
    // (uploadDone stays false).
  }
}

const CRLF = new Uint8Array([13, 10]);

/**
 * The final response head when it is buffered in `pc.r` (1xx other than 101
 * are skipped), else null: more bytes are needed. Throws UpstreamFailure for a
 * malformed or oversized head.
 */
function responseHeadIn(pc: PooledConn): ParsedResponse | null {
  const r = pc.r;
  while (r.available > 0) {
    const end = findHeadEnd(r.buf, r.start, r.end);
    if (end === -2) throw new UpstreamFailure("protocol", "invalid upstream response: bare LF");
    if (end < 0) {
      if (r.available > MAX_RESPONSE_HEAD) {
        throw new UpstreamFailure("protocol", "upstream response head too large");
      }
      return null;
    }
    const res = parseResponseHead(r.buf, r.start, end);
    if (res.error) throw new UpstreamFailure("protocol", res.reason);
    r.start = end;
    if (res.status >= 100 && res.status < 200 && res.status !== 101) continue;
    return res;
  }
  return null;
}

/** Why reading the response head failed (`received`: some of it had arrived). */
function headReadFailure(e: unknown, pc: PooledConn, received: boolean): UpstreamFailure {
  if (pc.uploadError !== null) return clientUploadFailure(pc.uploadError);
  const f = toFailure(e, pc);
  return new UpstreamFailure(f.kind, f.message, !received && f.kind === "reset");
}

/** Why the response head ended early: the upstream closed (or was closed) before it was complete. */
function headEndFailure(pc: PooledConn, ctx: RequestContext, received: boolean): UpstreamFailure {
  if (pc.uploadError !== null) return clientUploadFailure(pc.uploadError);
  if (pc.clientGone || ctx.aborted) return CLIENT_GONE;
  if (pc.timedOut) return new UpstreamFailure("timeout", "upstream timeout");
  return new UpstreamFailure("reset", "upstream closed the connection", !received);
}

function clientUploadFailure(e: unknown): UpstreamFailure {
  // A malformed body (400) or one over a body_limit (413): answered with its status, not a 502.
  if (e instanceof FramingError || e instanceof BodyLimitError) {
    return new UpstreamFailure("client", e.message, false, e.status);
  }
  return new UpstreamFailure("client", "client went away");
}
