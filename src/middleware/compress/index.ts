/**
 * `compress`: response compression (zstd, Brotli, gzip) negotiated from the
 * request's Accept-Encoding, streamed through a `response_body` filter: each
 * chunk is compressed and flushed as it passes, nothing is buffered whole, so
 * streamed responses (server-sent events) keep flowing. A writer-level
 * filter, so it works alike on HTTP/1.1, HTTP/2 and HTTP/3.
 *
 * ```yaml
 * middleware:
 *   - compress: { encodings: [zstd, br, gzip], min_length: 1KB, types: ["text/*", application/json] }
 * ```
 *
 * A response is compressed when its status carries a full body (not 1xx,
 * 204, 206 or 304), its Content-Type matches `types`, its length (when
 * known) is at least `min_length`, it has no Content-Encoding and no
 * `Cache-Control: no-transform`, the request has no Range, and the client
 * accepts one of `encodings` (highest q; ties go to the configured order).
 * Such a response gets `Vary: Accept-Encoding` whether or not the client
 * accepted a coding; a compressed one loses Content-Length and Accept-Ranges,
 * gets Content-Encoding, and its strong ETag becomes weak (`W/`), as nginx
 * does. HEAD gets the headers a GET would, without a body. gRPC responses are
 * never touched (gRPC has its own message compression).
 *
 * @module
 */
import type { RequestContext } from "../../core/context.ts";
import { addVary as addVaryToken, type HeaderList } from "../../core/headers.ts";
import type { BodyFilter, Middleware, ResponseHead } from "../../core/middleware.ts";
import type { CompressEncoding, CompressOptions } from "../../config/middleware/compress.ts";
import { createCompressor, supported } from "./codec.ts";
import { cachedNegotiator, typeMatcher } from "./negotiate.ts";

const NO_TRANSFORM = /(?:^|,)\s*no-transform\s*(?:,|$)/i;
const DIGITS = /^[0-9]{1,15}$/;

/** Adds `Accept-Encoding` to Vary unless it (or `*`) is listed already. */
export function addVary(h: HeaderList): void {
  addVaryToken(h, "Accept-Encoding");
}

/** Makes strong ETags weak (`"x"` → `W/"x"`): the compressed bytes are not the upstream's. */
function weakenEtags(h: HeaderList): void {
  const { keys, values } = h;
  for (let i = 0; i < keys.length; i++) {
    if (keys[i] === "etag" && values[i].charCodeAt(0) === 34 /* " */) values[i] = "W/" + values[i];
  }
}

/** The body length of `head`: exact when known (or a Content-Length field says it), else -1. */
function knownLength(head: ResponseHead): number {
  if (head.bodyLength >= 0) return head.bodyLength;
  const cl = head.headers.get("content-length");
  return cl !== undefined && DIGITS.test(cl) ? Number(cl) : -1;
}

/** The middleware for `o` (codings the runtime lacks are left out). */
export function compress(o: CompressOptions): Middleware {
  const encodings: CompressEncoding[] = [];
  for (const e of o.encodings) if (supported(e) && !encodings.includes(e)) encodings.push(e);
  const negotiate = cachedNegotiator(encodings);
  const compressible = typeMatcher(o.types);
  const min = o.min_length;

  const responseBody = (ctx: RequestContext, head: ResponseHead): BodyFilter | null => {
    const s = head.status;
    if (s < 200 || s === 204 || s === 206 || s === 304 || ctx.grpc !== 0 || encodings.length === 0) {
      return null;
    }
    // A range request passes untouched: ranges address the upstream's bytes.
    if (ctx.headers.has("range")) return null;
    const h = head.headers;
    const ce = h.get("content-encoding");
    if (ce !== undefined && ce.trim().toLowerCase() !== "identity") return null;
    const ct = h.get("content-type");
    if (ct === undefined || !compressible(ct)) return null;
    const cc = h.getJoined("cache-control");
    if (cc !== undefined && NO_TRANSFORM.test(cc)) return null;
    const length = knownLength(head);
    if (length === 0 || (length > 0 && length < min)) return null;
    // From here the answer depends on Accept-Encoding: caches must know.
    addVary(h);
    const i = negotiate(ctx.headers.getJoined("accept-encoding"));
    if (i === -1) return null;
    const encoding = encodings[i];
    h.set("content-encoding", encoding);
    h.delete("content-length");
    h.delete("accept-ranges");
    weakenEtags(h);
    head.bodyLength = -1;
    if (ctx.method === "HEAD") return null;
    return createCompressor(encoding, o, length);
  };

  return { name: "compress", responseBody };
}
