/**
 * Request-path normalisation, done once per request before routing.
 *
 * The normalised form is RFC 3986 §6.2.2 normalisation plus UTF-8 decoding:
 * - `%XX` of an unreserved character (`A-Z a-z 0-9 - . _ ~`) is decoded;
 * - `%XX` sequences forming valid UTF-8 for non-ASCII characters are decoded
 *   (`/caf%C3%A9` → `/café`);
 * - every other escape (reserved or special ASCII such as `%2F`, `%5C`, `%25`,
 *   `%3F`, `%20`) stays encoded, hex upper-cased, so an encoded slash never
 *   becomes a separator and nothing is ever decoded twice;
 * - dot-segments (also `%2e` forms) are resolved per RFC 3986 §5.2.4, never
 *   above the root;
 * - empty segments (`//`) are merged, since no route can name them and
 *   upstreams disagree on their meaning (a trailing slash is kept);
 * - invalid escapes, invalid UTF-8, and control characters (C0, DEL, C1; raw
 *   or encoded) make the path invalid (`null`, the caller answers 400).
 *
 * As a consequence every `%` left in a normalised path starts a valid `%XX`.
 *
 * @module
 */

const SLASH = 0x2f;
const DOT = 0x2e;
const PERCENT = 0x25;
const HEX = "0123456789ABCDEF";

/** Request target split into its path and raw query. */
export interface SplitTarget {
  path: string;
  /** Raw query without "?" ("" if none). */
  query: string;
}

/**
 * Splits a request target at the first "?" (a "#" fragment, which clients
 * should not send, is dropped). An absolute-form target
 * ("http://host/p?q", used towards proxies) yields its path ("/" if empty).
 */
export function splitTarget(target: string): SplitTarget {
  let start = 0;
  if (target.charCodeAt(0) !== SLASH) {
    const scheme = target.indexOf("://");
    if (scheme > 0) {
      start = scheme + 3;
      while (start < target.length) {
        const c = target.charCodeAt(start);
        if (c === SLASH || c === 0x3f || c === 0x23) break;
        start++;
      }
    }
  }
  let hash = target.indexOf("#", start);
  if (hash < 0) hash = target.length;
  const q = target.indexOf("?", start);
  if (q < 0 || q > hash) {
    return { path: absPath(target, start, hash), query: "" };
  }
  return { path: absPath(target, start, q), query: target.slice(q + 1, hash) };
}

function absPath(target: string, start: number, end: number): string {
  // An absolute-form target without a path means "/".
  if (start > 0 && start === end) return "/";
  return start === 0 && end === target.length ? target : target.slice(start, end);
}

/**
 * Normalises a request path (see the module doc). Returns the input itself,
 * without allocating, when it contains no `%`, no dot-segment and no `//`.
 * Returns `null` for an invalid path (caller answers 400).
 */
export function normalizePath(rawPath: string): string | null {
  const len = rawPath.length;
  if (len === 0 || rawPath.charCodeAt(0) !== SLASH) return null;
  for (let i = 0; i < len; i++) {
    const c = rawPath.charCodeAt(i);
    if (c === PERCENT) return slowNormalize(rawPath);
    if (isControl(c)) return null;
    if (c === SLASH && i + 1 < len) {
      const n = rawPath.charCodeAt(i + 1);
      if (n === SLASH || (n === DOT && isDotSegmentAt(rawPath, i + 1))) return slowNormalize(rawPath);
    }
  }
  return rawPath;
}

/** Whether a "." or ".." segment starts at `i` (which holds a dot). */
function isDotSegmentAt(s: string, i: number): boolean {
  const len = s.length;
  if (i + 1 === len || s.charCodeAt(i + 1) === SLASH) return true;
  if (s.charCodeAt(i + 1) !== DOT) return false;
  return i + 2 === len || s.charCodeAt(i + 2) === SLASH;
}

function isControl(c: number): boolean {
  return c < 0x20 || (c >= 0x7f && c <= 0x9f);
}

function slowNormalize(raw: string): string | null {
  const out: string[] = [];
  const len = raw.length;
  let trailing = false;
  let start = 1;
  for (;;) {
    let end = raw.indexOf("/", start);
    if (end < 0) end = len;
    const last = end === len;
    const seg = decodeSegment(raw, start, end);
    if (seg === null) return null;
    // Segments are split on raw "/" before decoding, so decoding cannot create
    // separators; a decoded "%2e%2e" is a dot-segment like "..".
    if (seg === "..") out.pop();
    else if (seg !== "" && seg !== ".") out.push(seg);
    if (last) {
      trailing = seg === "" || seg === "." || seg === "..";
      break;
    }
    start = end + 1;
  }
  if (out.length === 0) return "/";
  const joined = "/" + out.join("/");
  return trailing ? joined + "/" : joined;
}

/** Value of the hex digit `c`, or -1. */
function hexVal(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  if (l >= 0x61 && l <= 0x66) return l - 0x61 + 10;
  return -1;
}

/** Byte encoded by `%XX` at `i` (bounded by `end`), or -1 if malformed. */
function escapeAt(s: string, i: number, end: number): number {
  if (i + 2 >= end || s.charCodeAt(i) !== PERCENT) return -1;
  const hi = hexVal(s.charCodeAt(i + 1));
  const lo = hexVal(s.charCodeAt(i + 2));
  return hi < 0 || lo < 0 ? -1 : (hi << 4) | lo;
}

function isUnreserved(b: number): boolean {
  return (b >= 0x61 && b <= 0x7a) || (b >= 0x41 && b <= 0x5a) || (b >= 0x30 && b <= 0x39) ||
    b === 0x2d || b === DOT || b === 0x5f || b === 0x7e;
}

/**
 * Decodes one segment `s[start, end)` into normalised form (see module doc),
 * or returns null if it is invalid. Exported for pattern canonicalisation.
 */
export function decodeSegment(s: string, start: number, end: number): string | null {
  let out = "";
  let run = start;
  let i = start;
  while (i < end) {
    const c = s.charCodeAt(i);
    if (c !== PERCENT) {
      if (isControl(c)) return null;
      i++;
      continue;
    }
    const b = escapeAt(s, i, end);
    if (b < 0) return null;
    if (b < 0x80) {
      if (isControl(b)) return null;
      const piece = isUnreserved(b) ? String.fromCharCode(b) : "%" + HEX[b >> 4] + HEX[b & 15];
      out += s.slice(run, i) + piece;
      i += 3;
      run = i;
      continue;
    }
    // UTF-8 lead byte: 0xC2..0xDF (2), 0xE0..0xEF (3), 0xF0..0xF4 (4); rest invalid.
    const n = b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
    if (n === 0) return null;
    let cp = b & (n === 2 ? 0x1f : n === 3 ? 0x0f : 0x07);
    for (let k = 1; k < n; k++) {
      const cb = escapeAt(s, i + 3 * k, end);
      if (cb < 0x80 || cb > 0xbf) return null;
      cp = (cp << 6) | (cb & 0x3f);
    }
    // Reject overlongs, surrogates, out-of-range and C1 controls.
    if (
      (n === 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
      (n === 4 && (cp < 0x10000 || cp > 0x10ffff)) || isControl(cp)
    ) return null;
    out += s.slice(run, i) + String.fromCodePoint(cp);
    i += 3 * n;
    run = i;
  }
  return run === start ? s.slice(start, end) : out + s.slice(run, end);
}
