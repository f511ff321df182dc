/**
 * Path-pattern parsing, done once per route at router construction.
 *
 * Syntax, segment by segment (segments are separated by "/"):
 * - static text: `/api/users`, Unicode allowed (`/café`); written escapes are
 *   canonicalised like request paths, so `/caf%C3%A9` and `/café` are the same;
 * - a param, one whole non-empty segment: `{id}` or `:id`;
 * - a catch-all, last segment only: `*` (captured as `*`) or `{name...}`.
 *
 * A trailing slash is significant (`/exact` and `/exact/` are different).
 * Empty (`//`) and dot segments are rejected: normalised request paths never
 * contain them, so such a route could never match.
 *
 * @module
 */

import { decodeSegment } from "./path.ts";

/** A pattern piece: static text (including its slashes) or a param. */
export type PatternToken = { kind: "static"; text: string } | { kind: "param"; name: string };

/** Result of {@link parsePattern}. */
export interface ParsedPattern {
  /** Static chunks and params, in order; with a catch-all, the last static ends with "/". */
  tokens: PatternToken[];
  /** Catch-all name ("*" when unnamed), or null if the pattern has none. */
  catchAll: string | null;
  /** Param names in order, the catch-all's last. */
  paramNames: string[];
  /** Literal text before the first param/catch-all, without trailing slash. */
  prefix: string;
}

const NAME = /^[A-Za-z_][A-Za-z0-9_-]*$/;
// Characters a request path cannot carry raw, so a pattern must mean them encoded.
const MUST_ENCODE = /[ "<>\\^`|]/g;

/** Parses a path pattern; throws an `Error` describing the first problem. */
export function parsePattern(pattern: string): ParsedPattern {
  if (!pattern.startsWith("/")) throw new Error(`path pattern "${pattern}" must start with "/"`);
  if (/[?#]/.test(pattern)) throw new Error(`path pattern "${pattern}" must not contain "?" or "#"`);
  const segs = pattern.slice(1).split("/");
  const tokens: PatternToken[] = [];
  const paramNames: string[] = [];
  let catchAll: string | null = null;
  let buf = "";
  const fail = (why: string): never => {
    throw new Error(`path pattern "${pattern}": ${why}`);
  };
  const addName = (name: string) => {
    // "__proto__" would not become an own property of the params object.
    if (!NAME.test(name) || name === "__proto__") fail(`invalid param name "${name}"`);
    if (paramNames.includes(name)) fail(`duplicate param name "${name}"`);
    paramNames.push(name);
  };
  for (let k = 0; k < segs.length; k++) {
    const seg = segs[k];
    const last = k === segs.length - 1;
    buf += "/";
    let name: string | null = null;
    let rest = false;
    if (seg === "*") {
      rest = true;
      name = "*";
    } else if (seg.startsWith("{")) {
      if (!seg.endsWith("}")) fail(`unterminated "{" in segment "${seg}"`);
      name = seg.slice(1, -1);
      if (name.endsWith("...")) {
        rest = true;
        name = name.slice(0, -3);
      }
    } else if (seg.startsWith(":")) {
      name = seg.slice(1);
    }
    if (name === null) {
      if (seg === "" && !last) fail("empty segment");
      if (seg === "." || seg === "..") fail("dot segment");
      if (/[{}*]/.test(seg)) fail(`"{", "}" and "*" must form a whole segment (in "${seg}")`);
      const encoded = seg.replace(MUST_ENCODE, encodeChar);
      const canon = decodeSegment(encoded, 0, encoded.length);
      if (canon === null) fail(`invalid percent-encoding or control character in "${seg}"`);
      buf += canon;
      continue;
    }
    if (rest) {
      if (!last) fail("a catch-all must be the last segment");
      if (name !== "*") addName(name);
      else paramNames.push("*");
      catchAll = name;
      tokens.push({ kind: "static", text: buf });
      buf = "";
      break;
    }
    addName(name);
    tokens.push({ kind: "static", text: buf });
    tokens.push({ kind: "param", name });
    buf = "";
  }
  if (buf !== "") tokens.push({ kind: "static", text: buf });
  // tokens[0] is always static (the pattern starts with "/").
  let prefix = (tokens[0] as { text: string }).text;
  if (prefix.endsWith("/")) prefix = prefix.slice(0, -1);
  return { tokens, catchAll, paramNames, prefix };
}

function encodeChar(c: string): string {
  return "%" + c.charCodeAt(0).toString(16).toUpperCase().padStart(2, "0");
}
