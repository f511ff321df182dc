/**
 * gRPC-Web (binary and text) next to gRPC: the body framing is the same
 * (5-byte prefix + message); gRPC-Web moves the trailers into a last body
 * frame flagged 0x80, and the text flavour base64-encodes the whole body.
 * Browsers also need CORS, including a preflight answered by the gateway.
 *
 * @module
 */
import type { RequestContext } from "../core/context.ts";
import { HeaderList } from "../core/headers.ts";
import { FRAME_PREFIX, grpcFrame, grpcFrameLength } from "./frame.ts";

const enc = new TextEncoder();

/** The gRPC-Web trailer frame: flag 0x80, then "name: value\r\n" lines (names lower-case). */
export function trailerFrame(t: HeaderList): Uint8Array {
  let s = "";
  for (let i = 0; i < t.size; i++) s += t.keys[i] + ": " + t.values[i] + "\r\n";
  return grpcFrame(enc.encode(s), 0x80);
}

/**
 * The grpc-status in a gRPC-Web trailer frame that starts at `o` and ends
 * `b` exactly (flag 0x80, length, "name: value\r\n" lines); undefined when
 * `b` holds no such whole frame there.
 */
export function trailerFrameStatus(b: Uint8Array, o: number): string | undefined {
  const len = grpcFrameLength(b, o);
  if (len === -1 || b[o] !== 0x80 || o + FRAME_PREFIX + len !== b.length) return undefined;
  const m = /(?:^|\n)grpc-status:\s*([^\r\n]*)/i.exec(new TextDecoder().decode(b.subarray(o + FRAME_PREFIX)));
  return m === null ? undefined : m[1].trim();
}

/** Streaming base64 decoder for gRPC-Web text request bodies (chunks split anywhere; padded segments allowed). */
export class Base64Decoder {
  private pending = "";

  /** Decodes what is complete so far; keeps an incomplete 4-character group for the next chunk. */
  push(chunk: Uint8Array): Uint8Array {
    let s = this.pending;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i];
      // Skip whitespace some clients insert between segments.
      if (c !== 10 && c !== 13 && c !== 32) s += String.fromCharCode(c);
    }
    const usable = s.length - (s.length % 4);
    this.pending = s.slice(usable);
    if (usable === 0) return new Uint8Array(0);
    return decodeBase64Segments(s.slice(0, usable));
  }
}

/** Decodes base64 that may be several padded segments back to back ("AAA=BBBB"). */
function decodeBase64Segments(s: string): Uint8Array {
  const parts: Uint8Array[] = [];
  let from = 0;
  for (let i = 0; i < s.length; i += 4) {
    if (s[i + 3] === "=" || i + 4 === s.length) {
      parts.push(Uint8Array.from(atob(s.slice(from, i + 4)), (c) => c.charCodeAt(0)));
      from = i + 4;
    }
  }
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) (out.set(p, o), o += p.length);
  return out;
}

/** Streaming base64 encoder for gRPC-Web text responses: emits whole 3-byte groups, pads only at flush. */
export class Base64Encoder {
  private rest = new Uint8Array(0);

  push(chunk: Uint8Array): Uint8Array {
    const all = new Uint8Array(this.rest.length + chunk.length);
    all.set(this.rest);
    all.set(chunk, this.rest.length);
    const usable = all.length - (all.length % 3);
    this.rest = all.slice(usable);
    return enc.encode(toBase64(all.subarray(0, usable)));
  }

  flush(): Uint8Array {
    const r = this.rest;
    this.rest = new Uint8Array(0);
    return enc.encode(toBase64(r));
  }
}

function toBase64(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s);
}

/**
 * Answers a CORS preflight for gRPC-Web (an OPTIONS whose requested headers name
 * x-grpc-web). Returns null when the request is not one.
 */
export function grpcWebPreflight(ctx: RequestContext): Promise<void> | null {
  if (ctx.method !== "OPTIONS") return null;
  const origin = ctx.headers.get("origin");
  const reqHeaders = ctx.headers.get("access-control-request-headers");
  if (
    origin === undefined || reqHeaders === undefined ||
    ctx.headers.get("access-control-request-method") === undefined
  ) {
    return null;
  }
  // Only gRPC-Web clients name x-grpc-web; other preflights stay the route's business.
  if (!/x-grpc-web/i.test(reqHeaders)) return null;
  const h = new HeaderList();
  h.append("access-control-allow-origin", origin);
  h.append("access-control-allow-credentials", "true");
  h.append("access-control-allow-methods", "POST, OPTIONS");
  h.append("access-control-allow-headers", reqHeaders);
  h.append("access-control-max-age", "86400");
  h.append("vary", "Origin");
  ctx.res.writeHead(204, h, 0);
  return ctx.res.end();
}
