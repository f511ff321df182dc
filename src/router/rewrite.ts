/**
 * Upstream path rewriting and redirect targets, compiled once per route.
 *
 * Templates substitute `{name}` with a captured param and `{*}` (or
 * `{name...}`) with the catch-all rest. Values come from the normalised path,
 * so they are re-encoded for the wire before substitution:
 * - unreserved characters, sub-delims, ":" and "@" (and "/" in paths, where it
 *   only occurs in a catch-all rest) pass through;
 * - an existing valid escape such as `%2F` is kept as is (a param holding an
 *   encoded slash stays one segment upstream), a stray "%" becomes `%25`;
 * - everything else ("?", "#", space, non-ASCII, ...) is percent-encoded as UTF-8.
 * In a redirect's query part "&", "=", "+" and "#" are encoded too, and in its
 * authority only unreserved characters pass.
 *
 * @module
 */

/** A compiled template: substitutes params and the catch-all rest. */
export type Substitute = (params: Readonly<Record<string, string>>, rest: string) => string;

// Char-code tables of what passes unencoded in each context.
const UNRESERVED = charTable("-._~");
const PATH_SAFE = charTable("-._~!$&'()*+,;=:@/");
const QUERY_SAFE = charTable("-._~!$'()*,;:@/?");

function charTable(extra: string): Uint8Array {
  const t = new Uint8Array(128);
  for (let c = 0; c < 128; c++) {
    if ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)) t[c] = 1;
  }
  for (const ch of extra) t[ch.charCodeAt(0)] = 1;
  return t;
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x66);
}

/** Percent-encodes `value` for a context whose raw-safe ASCII is `safe` (see module doc). */
function encodeWith(value: string, safe: Uint8Array): string {
  let out = "";
  let run = 0;
  let i = 0;
  while (i < value.length) {
    const c = value.charCodeAt(i);
    if (c < 128 && safe[c] === 1) {
      i++;
      continue;
    }
    if (c === 0x25 && isHex(value.charCodeAt(i + 1)) && isHex(value.charCodeAt(i + 2))) {
      i += 3;
      continue;
    }
    let width = 1;
    let piece: string;
    if (c < 128) {
      piece = "%" + c.toString(16).toUpperCase().padStart(2, "0");
    } else if (c >= 0xd800 && c <= 0xdfff) {
      const lo = value.charCodeAt(i + 1);
      if (c <= 0xdbff && lo >= 0xdc00 && lo <= 0xdfff) {
        width = 2;
        piece = encodeURIComponent(value.slice(i, i + 2));
      } else {
        piece = "%EF%BF%BD"; // lone surrogate: U+FFFD, as encodeURIComponent would throw
      }
    } else {
      piece = encodeURIComponent(value[i]);
    }
    out += value.slice(run, i) + piece;
    i += width;
    run = i;
  }
  return run === 0 ? value : out + value.slice(run);
}

/** Encodes a normalised path (or path piece) for sending upstream. */
export function encodePath(path: string): string {
  return encodeWith(path, PATH_SAFE);
}

type Part = { literal: string } | { param: string | null; safe: Uint8Array };

/**
 * Splits `template` into literals and `{...}` references. `safeAt` chooses
 * the encoding context of a reference from the literal text before it.
 */
function parseTemplate(
  template: string,
  paramNames: readonly string[] | undefined,
  safeAt: (before: string) => Uint8Array,
): Part[] {
  const parts: Part[] = [];
  let literal = "";
  let i = 0;
  while (i < template.length) {
    const open = template.indexOf("{", i);
    const close = template.indexOf("}", i);
    if (close >= 0 && (open < 0 || close < open)) throw new Error(`template "${template}": unmatched "}"`);
    if (open < 0) {
      literal += template.slice(i);
      break;
    }
    if (close < 0) throw new Error(`template "${template}": unterminated "{"`);
    literal += template.slice(i, open);
    let name = template.slice(open + 1, close);
    if (name.endsWith("...")) name = name.slice(0, -3);
    if (name !== "*" && !/^[A-Za-z_][A-Za-z0-9_-]*$/.test(name)) {
      throw new Error(`template "${template}": invalid reference "{${template.slice(open + 1, close)}}"`);
    }
    if (name !== "*" && paramNames !== undefined && !paramNames.includes(name)) {
      throw new Error(`template "${template}": unknown param "${name}"`);
    }
    if (literal !== "") parts.push({ literal });
    parts.push({ param: name === "*" ? null : name, safe: safeAt(template.slice(0, open)) });
    literal = "";
    i = close + 1;
  }
  if (literal !== "") parts.push({ literal });
  return parts;
}

function build(parts: Part[]): Substitute {
  if (parts.length === 1 && "literal" in parts[0]) {
    const only = parts[0].literal;
    return () => only;
  }
  return (params, rest) => {
    let out = "";
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i];
      if ("literal" in p) out += p.literal;
      else out += encodeWith(p.param === null ? rest : (params[p.param] ?? rest), p.safe);
    }
    return out;
  };
}

/**
 * Compiles an upstream path template such as "/v2/users/{id}" or
 * "/files/{path}". `{*}` is the catch-all rest; `{name...}` is the named
 * catch-all (its param). With `paramNames` (the route's), unknown names throw.
 */
export function compileRewrite(template: string, paramNames?: readonly string[]): Substitute {
  if (!template.startsWith("/")) throw new Error(`rewrite "${template}" must start with "/"`);
  return build(parseTemplate(template, paramNames, () => PATH_SAFE));
}

/**
 * Compiles a redirect target (absolute URL or path) with the same
 * substitutions. A path-only result starting with "//" or "/\" is collapsed to
 * one "/" so a capture can never turn it into a protocol-relative URL.
 */
export function compileRedirect(urlTemplate: string, paramNames?: readonly string[]): Substitute {
  const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.exec(urlTemplate);
  const authorityStart = scheme ? scheme[0].length : -1;
  const safeAt = (before: string): Uint8Array => {
    if (before.includes("?") || before.includes("#")) return QUERY_SAFE;
    if (authorityStart >= 0 && !before.slice(authorityStart).includes("/")) return UNRESERVED;
    return PATH_SAFE;
  };
  const sub = build(parseTemplate(urlTemplate, paramNames, safeAt));
  if (scheme) return sub;
  return (params, rest) => {
    const url = sub(params, rest);
    const c = url.charCodeAt(1);
    return url.charCodeAt(0) === 0x2f && (c === 0x2f || c === 0x5c) ? "/" + url.replace(/^[/\\]+/, "") : url;
  };
}

/**
 * Removes `prefix` from `path` at a segment boundary: ("/api/v1/users",
 * "/api/v1") → "/users"; ("/api/v1", "/api/v1") → "/". A `prefix` that is not
 * a segment-aligned prefix of `path` leaves it unchanged.
 */
export function stripPrefix(path: string, prefix: string): string {
  if (prefix.endsWith("/")) prefix = prefix.slice(0, -1);
  if (prefix === "" || !path.startsWith(prefix)) return path;
  if (path.length === prefix.length) return "/";
  return path.charCodeAt(prefix.length) === 0x2f ? path.slice(prefix.length) : path;
}
