/**
 * HTTP/1.1 head serialisation: one string built per head, encoded once into
 * the caller's buffer (no per-field encoding, no intermediate arrays).
 */
import type { HeaderList } from "../core/headers.ts";

const encoder = new TextEncoder();

const REASONS: Record<number, string> = {
  100: "Continue",
  101: "Switching Protocols",
  200: "OK",
  201: "Created",
  202: "Accepted",
  204: "No Content",
  206: "Partial Content",
  301: "Moved Permanently",
  302: "Found",
  303: "See Other",
  304: "Not Modified",
  307: "Temporary Redirect",
  308: "Permanent Redirect",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  411: "Length Required",
  413: "Content Too Large",
  414: "URI Too Long",
  417: "Expectation Failed",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};

/** The standard reason phrase for `status` ("" when unknown). */
export function reasonPhrase(status: number): string {
  return REASONS[status] ?? "";
}

/** Builds the head text: start line, fields (CR/LF-bearing values dropped), extra lines, blank line. */
export function headText(startLine: string, headers: HeaderList, extra: string): string {
  let s = startLine;
  const { names, values } = headers;
  for (let i = 0; i < names.length; i++) {
    const v = values[i];
    // A value with CR or LF would inject fields: never emit it.
    if (v.indexOf("\n") !== -1 || v.indexOf("\r") !== -1) continue;
    s += names[i] + ": " + v + "\r\n";
  }
  return s + extra + "\r\n";
}

/**
 * Encodes `text` into `buf` at `offset`, byte per char (ISO-8859-1) so
 * obs-text received from a peer goes out unchanged. Returns the new offset, or
 * -1 when `buf` is too small.
 */
export function encodeLatin1Into(text: string, buf: Uint8Array, offset: number): number {
  const len = text.length;
  if (buf.length - offset < len) return -1;
  if (len < 96) {
    // Short strings (framing lines): a loop beats the encodeInto op call.
    for (let i = 0; i < len; i++) buf[offset + i] = text.charCodeAt(i);
    return offset + len;
  }
  // At offset 0 (upstream heads) the buffer itself: a view less per request.
  const { read, written } = encoder.encodeInto(text, offset === 0 ? buf : buf.subarray(offset));
  if (read === text.length && written === text.length) return offset + written;
  for (let i = 0; i < text.length; i++) buf[offset + i] = text.charCodeAt(i) & 0xff;
  return offset + text.length;
}

/** Encodes a head into a new buffer. */
export function encodeHead(startLine: string, headers: HeaderList, extra: string): Uint8Array {
  const text = headText(startLine, headers, extra);
  const buf = new Uint8Array(text.length);
  encodeLatin1Into(text, buf, 0);
  return buf;
}
