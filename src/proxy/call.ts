/**
 * A whole (buffered) HTTP/1.1 request on an upstream's connection pool, for
 * callers outside the request path: a plugin's `http_call`. It uses the same
 * connections, TLS settings (CA, client certificate, server name) and
 * keep-alive as proxied requests, which `fetch` could not.
 *
 * @module
 */
import { HeaderList, isConnectionField } from "../core/headers.ts";
import { findHeadEnd, parseResponseHead } from "../http1/parse.ts";
import { ChunkedBodyReader, CloseDelimitedReader, LengthBodyReader, writeAll } from "../http1/reader.ts";
import { encodeHead } from "../http1/serialize.ts";
import type { ConnectionPool, PooledConn } from "../upstream/pool.ts";
import { isHopByHop } from "./header_policy.ts";

/** A request for {@link call}. */
export interface CallRequest {
  method: string;
  /** Request target (path and query). */
  path: string;
  authority: string;
  /** Header fields (no pseudo-headers); hop-by-hop ones and framing are dropped. */
  headers: [string, string][];
  body: Uint8Array;
}

/** The upstream's answer: status, end-to-end headers, whole body, trailers. */
export interface CallResponse {
  status: number;
  headers: [string, string][];
  body: Uint8Array;
  trailers: [string, string][];
}

const MAX_HEAD = 64 * 1024;
/** Largest response body a call buffers. */
export const MAX_CALL_BODY = 16 << 20;

/**
 * Sends `req` on a pooled connection and reads the whole response within
 * `timeoutMs`. A reused connection that turns out to be closed is retried
 * once on a fresh one. Throws on connect failure, timeout, a malformed or
 * too large response.
 */
export async function call(pool: ConnectionPool, req: CallRequest, timeoutMs: number): Promise<CallResponse> {
  const deadline = Date.now() + timeoutMs;
  const head = requestHead(req);
  let pc = await pool.acquire(timeoutMs);
  for (;;) {
    const stale = pc.reused;
    try {
      return await exchangeWhole(pc, head, req, deadline);
    } catch (e) {
      if (!(e instanceof StaleConnection) || !stale) throw e;
      pc = await pool.openNew(Math.max(1, deadline - Date.now()));
    }
  }
}

/** Nothing came back on a reused connection: the upstream had closed it. */
class StaleConnection extends Error {}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** A request target or authority: visible ASCII only (no space, CTL or obs-text to inject with). */
const VISIBLE = /^[\x21-\x7e]+$/;

function requestHead(req: CallRequest): Uint8Array {
  if (!TOKEN.test(req.method)) throw new Error(`invalid method ${JSON.stringify(req.method)}`);
  if (!VISIBLE.test(req.path) || !VISIBLE.test(req.authority)) throw new Error("invalid :path or :authority");
  const h = new HeaderList();
  h.append("host", req.authority);
  for (const [k, v] of req.headers) {
    const key = k.toLowerCase();
    // headText drops values with CR/LF; a bad name is dropped here.
    if (!TOKEN.test(k) || isHopByHop(key)) continue;
    h.append(k, v);
  }
  const bodied = req.body.length > 0 || req.method === "POST" || req.method === "PUT" ||
    req.method === "PATCH";
  return encodeHead(
    `${req.method} ${req.path} HTTP/1.1\r\n`,
    h,
    bodied ? `content-length: ${req.body.length}\r\n` : "",
  );
}

async function exchangeWhole(
  pc: PooledConn,
  head: Uint8Array,
  req: CallRequest,
  deadline: number,
): Promise<CallResponse> {
  const pool = pc.pool;
  pc.begin();
  const timer = setTimeout(() => pc.expire(), Math.max(1, deadline - Date.now()));
  let reusable = false;
  try {
    await writeAll(pc.conn, head);
    if (req.body.length > 0) await writeAll(pc.conn, req.body);
    const r = pc.r;
    let received = false;
    for (;;) {
      // The head (skipping interim 1xx answers).
      let end = findHeadEnd(r.buf, r.start, r.end);
      while (end === -1) {
        if (await r.fill(MAX_HEAD) === 0) {
          if (!received) throw new StaleConnection("upstream closed the connection");
          throw new Error("upstream closed the connection before the response head");
        }
        received = true;
        end = findHeadEnd(r.buf, r.start, r.end);
      }
      if (end === -2) throw new Error("malformed upstream response head");
      const res = parseResponseHead(r.buf, r.start, end);
      r.start = end;
      if (res.error) throw new Error(res.reason);
      if (res.status < 200) continue;
      const bodyless = req.method === "HEAD" || res.status === 204 || res.status === 304;
      const reader = bodyless
        ? null
        : res.chunked
        ? new ChunkedBodyReader(r, 16 * 1024, false)
        : res.contentLength >= 0
        ? new LengthBodyReader(r, res.contentLength)
        : new CloseDelimitedReader(r);
      const chunks: Uint8Array[] = [];
      let size = 0;
      for (let c = reader === null ? null : await reader.read(); c !== null; c = await reader!.read()) {
        size += c.length;
        if (size > MAX_CALL_BODY) throw new Error(`response body over ${MAX_CALL_BODY} bytes`);
        chunks.push(c.slice()); // the reader's views are reused
      }
      const body = new Uint8Array(size);
      let o = 0;
      for (const c of chunks) body.set(c, o), o += c.length;
      reusable = !res.close && !(reader instanceof CloseDelimitedReader);
      return { status: res.status, headers: pairsOf(res.headers), body, trailers: pairsOf(reader?.trailers) };
    }
  } catch (e) {
    if (pc.timedOut) throw new Error("http call timed out");
    throw e;
  } finally {
    clearTimeout(timer);
    pool.release(pc, reusable && !pc.timedOut);
  }
}

function pairsOf(h: HeaderList | null | undefined): [string, string][] {
  const out: [string, string][] = [];
  if (h === null || h === undefined) return out;
  for (let i = 0; i < h.keys.length; i++) {
    if (!isConnectionField(h.keys[i])) out.push([h.keys[i], h.values[i]]);
  }
  return out;
}
